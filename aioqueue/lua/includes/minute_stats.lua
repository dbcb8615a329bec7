-- minute_stats: per-minute counters of a queue (throughput and latency), kept
-- for a bounded window. A script accumulates with minute_add/minute_max while
-- it works and writes once, at its end, with minute_flush: a few commands per
-- script call (per batch of jobs), never an extra round trip.
--
-- Key: <q>m:<minutes since the epoch> (hash), expiring 25 h after it was last
-- written. Fields: succeeded, failed, retried, cancelled, expired (leases that
-- ran out); run_n, run_ms, run_max (run time of settled attempts, ms); wait_n,
-- wait_ms, wait_max (enqueue to start of first attempts, ms).
-- The counters are for people: a key of a foreign type is left alone (the
-- counts are dropped) rather than failing the script that settles jobs.
local MINUTE_STATS_TTL_MS = 25 * 3600 * 1000
local minute_acc = {}

local function minute_add(field, n)
  minute_acc[field] = (minute_acc[field] or 0) + n
end

local function minute_max(field, value)
  if not minute_acc[field] or value > minute_acc[field] then
    minute_acc[field] = value
  end
end

local function minute_flush(Q, now)
  if next(minute_acc) == nil then
    return
  end
  local key = Q .. 'm:' .. math.floor(now / 60000)
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= 'hash' then
    return
  end
  for field, n in pairs(minute_acc) do
    if string.sub(field, -4) == '_max' then
      if n > tonumber(redis.call('HGET', key, field) or '-1') then
        redis.call('HSET', key, field, n)
      end
    else
      redis.call('HINCRBY', key, field, n)
    end
  end
  redis.call('PEXPIRE', key, MINUTE_STATS_TTL_MS)
  minute_acc = {}
end
