-- reap: hand back jobs whose lease expired (their worker died, hung or lost
-- Redis), or dead-letter them once they reached their delivery limit. Safe to
-- run from many workers at once: each expired lease is taken exactly once.
-- A job whose cancellation was asked ('cx') while it ran is not handed back:
-- it ends cancelled (its worker died before it could cancel it).
--
-- KEYS[1] leases           zset   <q>leases
-- KEYS[2] dead letters     zset   <q>dead
-- KEYS[3] priority levels  zset   <q>prios
-- KEYS[4] wake-up list     list   <q>wake
-- KEYS[5] stats            hash   <q>stats
-- KEYS[6] reaper state     hash   <q>reaper   seen = last reap (ms), hold = no reap before
-- ARGV[1] queue key prefix
-- ARGV[2] max leases to reap in this call
-- ARGV[3] default limit of lease expiries for records without their own ('md')
-- ARGV[4] dead-letter TTL (ms)
-- ARGV[5] result TTL (ms) for workflow records and cancelled jobs that end here
-- ARGV[6] stall threshold (ms): a gap this long since the previous reap means
--   Redis (or every worker) stood still, e.g. a frozen server; leases may look
--   expired only because nobody could renew them
-- ARGV[7] hold (ms): after such a gap, reap nothing for this long, so that live
--   workers renew first (no re-delivery storm after a stall)
-- Derived: <q>job:<id> for the expired ids, <q>wait:<p>, group keys (groups.lua), workflow keys,
--   channel <q>done:<id>, the per-minute stats <q>m:<minute> of server time
-- A job of a concurrency group ('g') frees its slot (groups.lua).
-- Each expired lease counts as 'expired' in the queue's per-minute stats.
-- Returns: {requeued, dead_lettered}
-- @include checks.lua
-- @include now_ms.lua
-- @include make_runnable.lua
-- @include groups.lua
-- @include add_error.lua
-- @include advance_workflow.lua
-- @include end_job.lua
-- @include minute_stats.lua
-- @include notify.lua
local qk = {prefix = need_prefix(ARGV[1], KEYS[3], 'prios'), prios = KEYS[3], wake = KEYS[4],
  stats = KEYS[5], dead = KEYS[2]}
local limit_n = need_int(ARGV[2], 'reap limit', 1)
local default_limit = need_int(ARGV[3], 'delivery limit', 1)
local dead_ttl = need_int(ARGV[4], 'dead-letter TTL', 1)
local result_ttl = need_int(ARGV[5], 'result TTL', 1)
local stall_ms = need_int(ARGV[6], 'stall threshold', 0)
local hold_ms = need_int(ARGV[7], 'hold', 0)
local now = now_ms()
local requeued, dead = 0, 0
local state = redis.call('HMGET', KEYS[6], 'seen', 'hold')
redis.call('HSET', KEYS[6], 'seen', now)
if tonumber(state[1]) and now - tonumber(state[1]) > stall_ms then
  redis.call('HSET', KEYS[6], 'hold', now + hold_ms)
  redis.call('HINCRBY', KEYS[5], 'reaper_stall_holds', 1)
  return {0, 0}
end
if tonumber(state[2]) and now < tonumber(state[2]) then
  return {0, 0}
end

local function dead_letter(id, jk, expiries)
  local err = cjson.encode({type = 'DeliveryLimitExceeded', message = 'delivery limit: ' .. expiries ..
    ' deliveries ended without a completion (the worker crashed, hung or lost its lease each time)',
    traceback = '', attempt = tonumber(redis.call('HGET', jk, 'att')) or 1})
  end_dead(qk, now, id, jk, err, dead_ttl, result_ttl)
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - dead_ttl)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit_n)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local jk = qk.prefix .. 'job:' .. id
  local rec = redis.call('HMGET', jk, 'st', 'md', 'cx', 'rt', 'g')
  if not rec[1] then
    redis.call('HINCRBY', KEYS[5], 'missing_record', 1)
  else
    redis.call('HINCRBY', KEYS[5], 'lease_expired', 1)
    if rec[5] then
      group_release(qk.prefix, rec[5], id, qk.wake)
    end
    minute_add('expired', 1)
    local expiries = redis.call('HINCRBY', jk, 'lx', 1)
    if rec[3] then
      end_cancelled(qk, now, id, jk, rec[3], rec[4], result_ttl)
      minute_add('cancelled', 1)
    elseif expiries >= (tonumber(rec[2]) or default_limit) then
      dead_letter(id, jk, expiries)
      minute_add('failed', 1)
      dead = dead + 1
    else
      make_runnable(qk, id, jk, true)
      requeued = requeued + 1
    end
  end
end
minute_flush(qk.prefix, now)
return {requeued, dead}
