-- workflow_cancel: cancel a workflow and all its members in one step. The
-- workflow ends cancelled first, so no member's end can advance it any more
-- (no next chain step, no chord callback, no 'succeeded' for a group that
-- continues on error). Waiting members end cancelled at once (a queued one's
-- id stays in its wait list and claim drops it); running members are flagged
-- and their workers told, exactly as cancel.lua does for one job.
--
-- KEYS[1] workflow record  hash   <q>wf:<id>
-- KEYS[2] member ids       list   <q>wfm:<id>
-- KEYS[3] chain steps      list   <q>wfc:<id>
-- KEYS[4] group results    hash   <q>wfr:<id>
-- KEYS[5] delayed          zset   <q>delayed
-- KEYS[6] stats            hash   <q>stats
-- KEYS[7] slot guard       none   <q>guard    never exists (includes/guard.lua)
-- ARGV[1] queue key prefix
-- ARGV[2] workflow id
-- ARGV[3] reason
-- ARGV[4] result TTL (ms) for the workflow and the members that end here
-- Derived: <q>job:<id> for the member ids, channels <q>cancel and <q>done:<id>
-- A member whose record key holds another type (written by something else)
-- is skipped and counted as 'malformed_record'. A workflow or queue key of
-- another type refuses the call before anything is written.
-- Returns a code:
-- Code 1 CANCELLED: the workflow was running and is now cancelled
-- Code 0 ALREADY_ENDED: it had already ended (or never existed): nothing done
-- @include check_types.lua
-- @include checks.lua
-- @include guard.lua
-- @include now_ms.lua
-- @include notify.lua
-- @include record_fields.lua
local Q = need_prefix(ARGV[1], KEYS[5], 'delayed')
need_guard(Q, KEYS[7])
local wfid = need_text(ARGV[2], 'workflow id')
need_key_for(KEYS[1], 'wf', wfid)
local ttl = need_int(ARGV[4], 'result TTL', 1)
if redis.call('HGET', KEYS[1], 'st') ~= 'running' then
  return 0
end
local wrong = check_types({KEYS[2], 'list', KEYS[5], 'zset', KEYS[6], 'hash'})
if wrong then
  return wrong
end
local members = redis.call('LRANGE', KEYS[2], 0, -1)
local now = now_ms()
local err = cjson.encode({type = 'Cancelled', message = ARGV[3], traceback = ''})
redis.call('HSET', KEYS[1], 'st', 'cancelled', 'e', err)
for _, id in ipairs(members) do
  local jk = Q .. 'job:' .. id
  local rec = redis.pcall('HMGET', jk, 'st', 'rt')
  if rec.err then
    redis.call('HINCRBY', KEYS[6], 'malformed_record', 1)
  elseif rec[1] == 'active' then
    redis.call('HSET', jk, 'cx', ARGV[3])
    notify(Q .. 'cancel', id)
  elseif rec[1] == 'queued' or rec[1] == 'scheduled' then
    if rec[1] == 'scheduled' then
      redis.call('ZREM', KEYS[5], id)
    end
    redis.call('HSET', jk, 'st', 'cancelled', 'e', err, 'tf', now)
    redis.call('PEXPIRE', jk, field_ttl(rec[2], ttl))
    redis.call('HINCRBY', KEYS[6], 'cancelled', 1)
    notify(Q .. 'done:' .. id, 'cancelled')
  end
end
for _, key in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[4]}) do
  redis.call('PEXPIRE', key, ttl)
end
notify(Q .. 'done:' .. wfid, 'cancelled')
return 1
