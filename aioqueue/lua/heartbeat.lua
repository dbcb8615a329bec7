-- heartbeat: record that a worker process is alive, on server time, in one
-- step; or remove it when it stops. Workers that stop beating stay listed
-- (as lost, judged by readers from their interval) until they have been
-- silent for the retention time; each beat prunes the ones past it.
--
-- KEYS[1] worker index     zset   <prefix>:{workers}       member = worker id, score = last beat (ms)
-- KEYS[2] worker record    hash   <prefix>:{workers}:<id>  the fields of ARGV[5..]
-- ARGV[1] worker id
-- ARGV[2] 'beat' or 'stop'
-- ARGV[3] retention (ms) of a silent worker's record (> 0)
-- ARGV[4] most workers the index keeps (> 0; the least recently seen go first)
-- ARGV[5..] field, value pairs (beat only)
-- Returns: server time (ms); an error reply, with nothing changed, for a bad
--   argument or a key of the wrong type
-- @include check_types.lua
local id, action = ARGV[1], ARGV[2]
local retention, most = tonumber(ARGV[3]), tonumber(ARGV[4])
if action ~= 'beat' and action ~= 'stop' then
  return redis.error_reply('ERR heartbeat: ARGV[2] must be beat or stop')
end
if not retention or retention <= 0 or not most or most <= 0 or (#ARGV - 4) % 2 ~= 0 then
  return redis.error_reply('ERR heartbeat: bad retention, limit or field list')
end
local wrong = check_types({KEYS[1], 'zset', KEYS[2], 'hash'})
if wrong then
  return wrong
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if action == 'stop' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('DEL', KEYS[2])
  return now
end
local fields = {'seen', now}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('PEXPIRE', KEYS[2], retention)
redis.call('ZADD', KEYS[1], now, id)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - retention)
local size = redis.call('ZCARD', KEYS[1])
if size > most then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[1], 0, size - most - 1)) do
    redis.call('ZREM', KEYS[1], old)
  end
end
return now
