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
-- KEYS[7] slot guard       none   <q>guard    never exists (includes/guard.lua)
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
-- An id whose record key holds another type (written by something else) is
-- dropped and counted as 'malformed_record'; fields that are not what they
-- should be are ignored or start again (record_fields.lua), and a job whose
-- wait list holds another type ends dead-lettered (end_job.lua), so one
-- damaged job never stops the batch half-way.
-- A queue key of another type refuses the call before anything is written.
-- Returns: {requeued, dead_lettered}
-- @include check_types.lua
-- @include checks.lua
-- @include guard.lua
-- @include now_ms.lua
-- @include make_runnable.lua
-- @include groups.lua
-- @include add_error.lua
-- @include advance_workflow.lua
-- @include end_job.lua
-- @include minute_stats.lua
-- @include notify.lua
-- @include record_fields.lua
local qk = {prefix = need_prefix(ARGV[1], KEYS[3], 'prios'), prios = KEYS[3], wake = KEYS[4],
  stats = KEYS[5], dead = KEYS[2]}
need_guard(qk.prefix, KEYS[7])
local limit_n = need_int(ARGV[2], 'reap limit', 1)
local default_limit = need_int(ARGV[3], 'delivery limit', 1)
local dead_ttl = need_int(ARGV[4], 'dead-letter TTL', 1)
local result_ttl = need_int(ARGV[5], 'result TTL', 1)
local stall_ms = need_int(ARGV[6], 'stall threshold', 0)
local hold_ms = need_int(ARGV[7], 'hold', 0)
local wrong = check_types({KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'list',
  KEYS[5], 'hash', KEYS[6], 'hash'})
if wrong then
  return wrong
end
local now = now_ms()
local requeued, dead = 0, 0
local state = redis.call('HMGET', KEYS[6], 'seen', 'hold')
redis.call('HSET', KEYS[6], 'seen', now)
local seen, held_until = field_int(state[1], 0, FIELD_MAX), field_int(state[2], 0, FIELD_MAX)
if seen and now - seen > stall_ms then
  redis.call('HSET', KEYS[6], 'hold', now + hold_ms)
  redis.call('HINCRBY', KEYS[5], 'reaper_stall_holds', 1)
  return {0, 0}
end
if held_until and now < held_until then
  return {0, 0}
end

local function dead_letter(id, jk, expiries)
  local err = cjson.encode({type = 'DeliveryLimitExceeded', message = 'delivery limit: ' .. expiries ..
    ' deliveries ended without a completion (the worker crashed, hung or lost its lease each time)',
    traceback = '', attempt = field_int(redis.call('HGET', jk, 'att'), 0, FIELD_MAX) or 1})
  end_dead(qk, now, id, jk, err, dead_ttl, result_ttl)
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - dead_ttl)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit_n)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local jk = qk.prefix .. 'job:' .. id
  local rec = redis.pcall('HMGET', jk, 'st', 'md', 'cx', 'rt', 'g')
  if rec.err then
    redis.call('HINCRBY', KEYS[5], 'malformed_record', 1)
  elseif not rec[1] then
    redis.call('HINCRBY', KEYS[5], 'missing_record', 1)
  else
    redis.call('HINCRBY', KEYS[5], 'lease_expired', 1)
    if rec[5] then
      group_release(qk.prefix, rec[5], id, qk.wake)
    end
    minute_add('expired', 1)
    local expiries = bump(jk, 'lx', 1)
    if rec[3] then
      end_cancelled(qk, now, id, jk, rec[3], rec[4], result_ttl)
      minute_add('cancelled', 1)
    elseif expiries >= (field_int(rec[2], 1, FIELD_MAX) or default_limit) then
      dead_letter(id, jk, expiries)
      minute_add('failed', 1)
      dead = dead + 1
    elseif runnable_or_dead(qk, now, id, jk, true, dead_ttl, result_ttl) then
      requeued = requeued + 1
    else
      dead = dead + 1
    end
  end
end
minute_flush(qk.prefix, now)
return {requeued, dead}
