-- guard: the slot guard '<q>guard', a key that never exists, declared in
-- KEYS by the scripts that write keys they derive inside the script
-- (<q>wait:<p>, <q>m:<minute>, workflow keys). While a Redis Cluster moves
-- the queue's slot the legacy way (SETSLOT MIGRATING/IMPORTING + MIGRATE),
-- a derived key that is absent on the node running the script (moved
-- already, or simply empty) stops the script with an error at that command,
-- after its earlier writes: Redis does not roll a script back, so a job
-- could be left in no structure. A declared key that is absent makes Redis
-- refuse the whole script first, with TRYAGAIN (or ASK, then TRYAGAIN on the
-- target), until the slot has moved; the caller retries. Elsewhere (a
-- single server, a stable slot) the guard costs nothing: it is never read.
-- Declared by settle, reap, cancel, replay, purge, purge_waiting and the
-- workflow scripts that write members. claim and enqueue need none: each
-- declares a key that is absent whenever they would write (claim its fresh
-- reservation key or the pause flag, enqueue the new job's record).
local function need_guard(prefix, key)
  if prefix .. 'guard' ~= key then
    refuse('the slot guard key must be the queue prefix + guard, got', key)
  end
end
