-- workflow_members: add the next chunk of a large group's (or chord's)
-- members to a workflow created by workflow.lua. Idempotent by member id: a
-- chunk sent again adds nothing twice.
--
-- KEYS[1] workflow record  hash   <q>wf:<id>
-- KEYS[2] member ids       list   <q>wfm:<id>
-- KEYS[3] priority levels  zset   <q>prios
-- KEYS[4] wake-up list     list   <q>wake
-- KEYS[5] slot guard       none   <q>guard    never exists (includes/guard.lua)
-- ARGV[1] queue key prefix
-- ARGV[2] workflow id
-- ARGV[3] index of the first member in this chunk
-- ARGV[4..] jobs of 5 entries each: id, task, args JSON, priority, overrides
-- Derived: <q>job:<id> and <q>wait:<p> for the member jobs
-- A member record, wait list or the members' list of another type (written by
-- something else) refuses the call with WRONGTYPE before anything is written.
-- Returns a code:
-- Code 1 ADDED: the members exist now
-- Code 0 NOT_RUNNING: the workflow does not exist or has ended (cancelled): nothing written
-- @include checks.lua
-- @include guard.lua
-- @include overrides.lua
-- @include now_ms.lua
-- @include push_job.lua
-- @include member_jobs.lua
local qk = {prefix = need_prefix(ARGV[1], KEYS[3], 'prios'), prios = KEYS[3], wake = KEYS[4]}
need_guard(qk.prefix, KEYS[5])
local wfid = need_text(ARGV[2], 'workflow id')
need_key_for(KEYS[1], 'wf', wfid)
local first = need_int(ARGV[3], 'first index', 0)
if (#ARGV - 3) % 5 ~= 0 then
  refuse('want jobs of 5 entries, got arguments', #ARGV)
end
local count = (#ARGV - 3) / 5
local fields = member_jobs(4, count, wfid, first)
local wf = redis.call('HMGET', KEYS[1], 'st', 'n')
if wf[1] ~= 'running' or first + count > (tonumber(wf[2]) or 0) then
  return 0
end
local wrong = member_keys_wrong(qk.prefix, 4, count, {KEYS[2]})
if wrong then
  return wrong
end
local now = now_ms()
for i = 0, count - 1 do
  local at = 4 + 5 * i
  if push_job(qk, now, ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], fields[i]) then
    redis.call('RPUSH', KEYS[2], ARGV[at])
  end
end
return 1
