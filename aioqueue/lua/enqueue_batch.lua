-- enqueue_batch: enqueue many jobs of one task with the same options in one
-- script call (the per-call cost of a script is larger than a job's writes).
-- Same semantics per job as enqueue.lua: idempotent by job id.
--
-- KEYS[1] wait list        list    <q>wait:<priority>
-- KEYS[2] priority levels  zset    <q>prios
-- KEYS[3] wake-up list     list    <q>wake
-- KEYS[4] delayed          zset    <q>delayed
-- ARGV[1] queue key prefix
-- ARGV[2] priority (integer)
-- ARGV[3] delay in ms relative to server TIME (0 = none)
-- ARGV[4] absolute due time in epoch ms ('' = none)
-- ARGV[5] extra record fields as alternating name/value, joined by \31 ('' = none)
-- ARGV[6..] triples: job id, task name, arguments JSON
-- Returns: one code per job: 1 queued, 2 scheduled, 0 id already exists
-- @include check_types.lua
local wrong = check_types({KEYS[1], 'list', KEYS[2], 'zset', KEYS[3], 'list', KEYS[4], 'zset'})
if wrong then
  return wrong
end
local Q = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = 0
if tonumber(ARGV[3]) > 0 then
  due = now + tonumber(ARGV[3])
elseif ARGV[4] ~= '' then
  due = tonumber(ARGV[4])
end
local common = {'et', now}
if ARGV[2] ~= '0' then
  common[#common + 1] = 'p'
  common[#common + 1] = ARGV[2]
end
if ARGV[5] ~= '' then
  for part in string.gmatch(ARGV[5], '[^\31]+') do
    common[#common + 1] = part
  end
end
local scheduled = due > now
if scheduled then
  common[#common + 1] = 'st'
  common[#common + 1] = 'scheduled'
  common[#common + 1] = 'due'
  common[#common + 1] = due
else
  common[#common + 1] = 'st'
  common[#common + 1] = 'queued'
end
local codes = {}
local queued = {}
for i = 6, #ARGV, 3 do
  local id = ARGV[i]
  local jk = Q .. 'job:' .. id
  if redis.call('EXISTS', jk) == 1 then
    codes[#codes + 1] = 0
  else
    redis.call('HSET', jk, 't', ARGV[i + 1], 'a', ARGV[i + 2], unpack(common))
    if scheduled then
      redis.call('ZADD', KEYS[4], due, id)
      codes[#codes + 1] = 2
    else
      queued[#queued + 1] = id
      codes[#codes + 1] = 1
    end
  end
end
if #queued > 0 then
  for i = 1, #queued, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(queued, i, math.min(i + 999, #queued)))
  end
  redis.call('ZADD', KEYS[2], -tonumber(ARGV[2]), ARGV[2])
end
if #codes > 0 and redis.call('LLEN', KEYS[3]) < 8 then
  redis.call('RPUSH', KEYS[3], '1')
end
return codes
