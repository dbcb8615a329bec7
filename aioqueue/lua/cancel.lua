-- cancel: cancel one job. A queued or scheduled job ends cancelled at once;
-- a queued one's id stays in its wait list (removing it would scan the list)
-- and claim drops it when it reaches it: the record says it ended.
-- A running job is flagged ('cx') and its workers are told on the queue's
-- cancel channel; the worker holding the lease cancels the coroutine and
-- settles it as cancelled (renewals also report the flag, so a missed message
-- delays the cancellation by one renew interval at most; if that worker dies,
-- the reaper ends the job cancelled instead of handing it back).
--
-- KEYS[1] job record       hash   <q>job:<id>
-- KEYS[2] delayed          zset   <q>delayed
-- KEYS[3] stats            hash   <q>stats
-- KEYS[4] priority levels  zset   <q>prios
-- KEYS[5] wake-up list     list   <q>wake
-- KEYS[6] slot guard       none   <q>guard    never exists (includes/guard.lua)
-- ARGV[1] queue key prefix
-- ARGV[2] job id
-- ARGV[3] reason
-- ARGV[4] default result TTL (ms) for a record without its own
-- Derived: workflow keys, channels <q>cancel and <q>done:<id>
-- Returns an outcome:
-- Code 'cancelled' CANCELLED: it was queued or scheduled: it ended cancelled now
-- Code 'requested' REQUESTED: it is running: its worker will cancel it
-- Code 'finished' ALREADY_FINISHED: it had already ended: nothing done
-- Code 'missing' NOT_FOUND: no record (or its key holds another type: not a job of ours)
-- A queue key of another type refuses the call before anything is written.
-- @include check_types.lua
-- @include checks.lua
-- @include guard.lua
-- @include now_ms.lua
-- @include advance_workflow.lua
-- @include end_job.lua
-- @include notify.lua
local qk = {prefix = need_prefix(ARGV[1], KEYS[4], 'prios'), prios = KEYS[4], wake = KEYS[5],
  stats = KEYS[3]}
need_guard(qk.prefix, KEYS[6])
local id = need_text(ARGV[2], 'job id')
need_key_for(KEYS[1], 'job', id)
local default_ttl = need_int(ARGV[4], 'default result TTL', 1)
local wrong = check_types({KEYS[2], 'zset', KEYS[3], 'hash', KEYS[4], 'zset', KEYS[5], 'list'})
if wrong then
  return wrong
end
local rec = redis.pcall('HMGET', KEYS[1], 'st', 'rt')
local status = not rec.err and rec[1]
if not status then
  return 'missing'
end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return 'finished'
end
if status == 'active' then
  redis.call('HSET', KEYS[1], 'cx', ARGV[3])
  notify(qk.prefix .. 'cancel', id)
  return 'requested'
end
if status ~= 'queued' then
  redis.call('ZREM', KEYS[2], id)
end
end_cancelled(qk, now_ms(), id, KEYS[1], ARGV[3], rec[2], default_ttl)
return 'cancelled'
