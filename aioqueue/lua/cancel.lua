-- cancel: cancel one job. A queued or scheduled job is removed from its list
-- and ends cancelled at once. A running job is flagged ('cx') and its workers
-- are told on the queue's cancel channel; the worker holding the lease cancels
-- the coroutine and settles it as cancelled (renewals also report the flag, so
-- a missed message delays the cancellation by one renew interval at most).
--
-- KEYS[1] job record       hash   <q>job:<id>
-- KEYS[2] delayed          zset   <q>delayed
-- KEYS[3] leases           zset   <q>leases
-- KEYS[4] stats            hash   <q>stats
-- ARGV[1] queue key prefix
-- ARGV[2] job id
-- ARGV[3] reason
-- ARGV[4] default result TTL (ms) for a record without its own
-- Returns: 'cancelled' (was queued or scheduled), 'requested' (running: the worker
--   will cancel it), 'finished' (already ended: nothing done), 'missing' (no record)
-- @include push_job.lua
-- @include advance_workflow.lua
local Q = ARGV[1]
local id = ARGV[2]
local rec = redis.call('HMGET', KEYS[1], 'st', 'p', 'rt')
local status = rec[1]
if not status then
  return 'missing'
end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return 'finished'
end
if status == 'active' then
  redis.call('HSET', KEYS[1], 'cx', ARGV[3])
  redis.call('PUBLISH', Q .. 'cancel', id)
  return 'requested'
end
if status == 'queued' then
  redis.call('LREM', Q .. 'wait:' .. (rec[2] or '0'), 1, id)
else
  redis.call('ZREM', KEYS[2], id)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local err = cjson.encode({type = 'Cancelled', message = ARGV[3], traceback = ''})
redis.call('HSET', KEYS[1], 'st', 'cancelled', 'e', err, 'tf', now)
advance_workflow(Q, now, KEYS[1], 'cancel', err, tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[1], tonumber(rec[3]) or tonumber(ARGV[4]))
redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
redis.call('PUBLISH', Q .. 'done:' .. id, 'cancelled')
return 'cancelled'
