-- renew: extend the leases of a worker's running jobs in one round trip.
-- A lease is extended only for the holder of the current token; a job whose
-- lease was lost (expired and re-delivered, or settled) is reported back.
--
-- KEYS[1] leases           zset   <q>leases
-- KEYS[2..] job records    hash   <q>job:<id>, one per ARGV group, in order
-- ARGV[1] lease duration (ms)
-- ARGV[2..] pairs: id, token
-- Returns: one code per job:
-- Code 1 RENEWED: the lease was extended
-- Code 0 LOST: this token no longer holds the lease (the worker must stop the job);
--   also for a record key of another type (written by something else)
-- Code 2 CANCEL_REQUESTED: renewed, but cancellation was asked (the worker must cancel it)
-- @include checks.lua
-- @include now_ms.lua
local lease_ms = need_int(ARGV[1], 'lease', 1)
local pairs_count = (#ARGV - 1) / 2
if pairs_count ~= math.floor(pairs_count) or pairs_count ~= #KEYS - 1 then
  refuse('want one job record key per (id, token) pair, got keys/args', #KEYS .. '/' .. #ARGV)
end
for g = 1, pairs_count do
  need_key_for(KEYS[1 + g], 'job', ARGV[2 * g])
end
local deadline = now_ms() + lease_ms
local codes = {}
for g = 1, pairs_count do
  local id, token = ARGV[2 * g], ARGV[2 * g + 1]
  -- pcall: a key of another type answers WRONGTYPE instead of stopping the batch
  local rec = redis.pcall('HMGET', KEYS[1 + g], 'tk', 'cx')
  if not rec.err and rec[1] == token and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', deadline, id)
    if rec[2] then
      codes[#codes + 1] = 2
    else
      codes[#codes + 1] = 1
    end
  else
    codes[#codes + 1] = 0
  end
end
return codes
