-- reap: hand back jobs whose lease expired (their worker died, hung or lost
-- Redis), or dead-letter them once they reached their delivery limit. Safe to
-- run from many workers at once: each expired lease is taken exactly once.
--
-- KEYS[1] leases           zset   <q>leases
-- KEYS[2] dead letters     zset   <q>dead
-- KEYS[3] priority levels  zset   <q>prios
-- KEYS[4] wake-up list     list   <q>wake
-- KEYS[5] stats            hash   <q>stats
-- ARGV[1] queue key prefix
-- ARGV[2] max leases to reap in this call
-- ARGV[3] default limit of lease expiries for records without their own ('md')
-- ARGV[4] dead-letter TTL (ms)
-- ARGV[5] result TTL (ms) for workflow records that end here
-- ARGV[6] stall threshold (ms): a gap this long since the previous reap means
--   Redis (or every worker) stood still, e.g. a frozen server; leases may look
--   expired only because nobody could renew them
-- ARGV[7] hold (ms): after such a gap, reap nothing for this long, so that live
--   workers renew first (no re-delivery storm after a stall)
-- KEYS[6] reaper state     hash   <q>reaper   seen = last reap (ms), hold = no reap before
-- Each expired lease counts as 'expired' in the queue's per-minute stats.
-- Returns: {requeued, dead_lettered}
-- @include push_job.lua
-- @include make_runnable.lua
-- @include advance_workflow.lua
-- @include minute_stats.lua
local Q = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead_ttl = tonumber(ARGV[4])
local requeued, dead = 0, 0
local state = redis.call('HMGET', KEYS[6], 'seen', 'hold')
redis.call('HSET', KEYS[6], 'seen', now)
if state[1] and now - tonumber(state[1]) > tonumber(ARGV[6]) then
  redis.call('HSET', KEYS[6], 'hold', now + tonumber(ARGV[7]))
  redis.call('HINCRBY', KEYS[5], 'reaper_stall_holds', 1)
  return {0, 0}
end
if state[2] and now < tonumber(state[2]) then
  return {0, 0}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - dead_ttl)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local jk = Q .. 'job:' .. id
  local rec = redis.call('HMGET', jk, 'st', 'dlv', 'md', 'p', 'lx')
  if not rec[1] then
    redis.call('HINCRBY', KEYS[5], 'missing_record', 1)
  else
    redis.call('HINCRBY', KEYS[5], 'lease_expired', 1)
    minute_add('expired', 1)
    local limit = tonumber(rec[3] or ARGV[3])
    local expiries = redis.call('HINCRBY', jk, 'lx', 1)
    if expiries >= limit then
      local err = {type = 'DeliveryLimitExceeded', message = 'delivery limit: ' .. expiries ..
        ' deliveries ended without a completion (the worker crashed, hung or lost its lease each time)',
        traceback = '', attempt = tonumber(redis.call('HGET', jk, 'att') or '1')}
      local history = cjson.decode(redis.call('HGET', jk, 'eh') or '[]')
      history[#history + 1] = err
      redis.call('HSET', jk, 'st', 'failed', 'e', cjson.encode(err), 'eh', cjson.encode(history), 'tf', now)
      redis.call('ZADD', KEYS[2], now, id)
      redis.call('PEXPIRE', jk, dead_ttl)
      redis.call('HINCRBY', KEYS[5], 'failed', 1)
      redis.call('PUBLISH', Q .. 'done:' .. id, 'failed')
      advance_workflow(Q, now, jk, 'dead', cjson.encode(err), tonumber(ARGV[5]))
      minute_add('failed', 1)
      dead = dead + 1
    else
      make_runnable(Q, id, jk, true)
      requeued = requeued + 1
    end
  end
end
minute_flush(Q, now)
return {requeued, dead}
