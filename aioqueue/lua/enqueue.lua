-- enqueue: create a job record and make it runnable (or scheduled), atomically.
-- Idempotent by job id: if the record exists nothing is written, so a client
-- retry after an unknown outcome never creates a second job.
--
-- KEYS[1] job record       hash    <q>job:<id>
-- KEYS[2] wait list        list    <q>wait:<priority>
-- KEYS[3] priority levels  zset    <q>prios        member = priority, score = -priority
-- KEYS[4] wake-up list     list    <q>wake         tokens that wake idle fetchers
-- KEYS[5] delayed          zset    <q>delayed      member = id, score = due time (ms)
-- KEYS[6] (optional) schedules zset <q>schedules   member = schedule, score = last tick (ms)
-- ARGV[1] job id
-- ARGV[2] task name
-- ARGV[3] arguments (JSON object)
-- ARGV[4] priority (integer)
-- ARGV[5] delay in ms relative to server TIME (0 = none)
-- ARGV[6] absolute due time in epoch ms ('' = none)
-- ARGV[7] extra record fields as alternating name/value, joined by \31 ('' = none)
-- ARGV[8] (with KEYS[6]) schedule name, ARGV[9] its tick (ms): enqueue only if
--   no supervisor fired this tick or a later one, so each tick runs once
-- Returns: 1 created and queued, 2 created and scheduled, 0 id already exists
--   (or the tick was already fired).
-- @include check_types.lua
local wrong = check_types({KEYS[1], 'hash', KEYS[2], 'list', KEYS[3], 'zset', KEYS[4], 'list',
  KEYS[5], 'zset'})
if wrong then
  return wrong
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if KEYS[6] then
  local last = redis.call('ZSCORE', KEYS[6], ARGV[8])
  if last and tonumber(last) >= tonumber(ARGV[9]) then
    return 0
  end
  redis.call('ZADD', KEYS[6], ARGV[9], ARGV[8])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = 0
local delay = tonumber(ARGV[5])
if delay > 0 then
  due = now + delay
elseif ARGV[6] ~= '' then
  due = tonumber(ARGV[6])
end
local fields = {'t', ARGV[2], 'a', ARGV[3], 'et', now}
if ARGV[4] ~= '0' then
  fields[#fields + 1] = 'p'
  fields[#fields + 1] = ARGV[4]
end
if ARGV[7] ~= '' then
  for part in string.gmatch(ARGV[7], '[^\31]+') do
    fields[#fields + 1] = part
  end
end
if due > now then
  fields[#fields + 1] = 'st'
  fields[#fields + 1] = 'scheduled'
  fields[#fields + 1] = 'due'
  fields[#fields + 1] = due
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('ZADD', KEYS[5], due, ARGV[1])
  -- wake an idle fetcher so it re-reads the next due time
  if redis.call('LLEN', KEYS[4]) < 8 then
    redis.call('RPUSH', KEYS[4], '1')
  end
  return 2
end
fields[#fields + 1] = 'st'
fields[#fields + 1] = 'queued'
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], -tonumber(ARGV[4]), ARGV[4])
if redis.call('LLEN', KEYS[4]) < 8 then
  redis.call('RPUSH', KEYS[4], '1')
end
return 1
