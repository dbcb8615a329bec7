-- renew: extend the leases of a worker's running jobs in one round trip.
-- A lease is extended only for the holder of the current token; a job whose
-- lease was lost (expired and re-delivered, or settled) is reported back.
--
-- KEYS[1] leases   zset   <q>leases
-- ARGV[1] queue key prefix
-- ARGV[2] lease duration (ms)
-- ARGV[3..] pairs: id, token
-- Returns: one code per job: 1 renewed, 0 lease lost, 2 renewed but
--   cancellation was requested (the worker must cancel the job)
local Q = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[2])
local codes = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local rec = redis.call('HMGET', Q .. 'job:' .. id, 'dlv', 'cx')
  if rec[1] == token and redis.call('ZSCORE', KEYS[1], id) then
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
