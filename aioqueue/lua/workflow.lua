-- workflow: create a workflow (chain, group or chord) and its first member
-- jobs, atomically. Idempotent by workflow id. A large group is created in
-- chunks (so no single call blocks the server): the first call creates the
-- workflow and its first members, later calls (workflow_members.lua) add the
-- rest; the group can only complete once every member exists and ended.
--
-- KEYS[1] workflow record  hash   <q>wf:<id>
-- KEYS[2] member ids       list   <q>wfm:<id>
-- KEYS[3] chain steps      list   <q>wfc:<id>  the steps not started yet
-- KEYS[4] priority levels  zset   <q>prios
-- KEYS[5] wake-up list     list   <q>wake
-- ARGV[1] queue key prefix
-- ARGV[2] workflow id
-- ARGV[3] kind: 'chain' | 'group' | 'chord'
-- ARGV[4] number of members (group/chord) or steps (chain)
-- ARGV[5] continue on error: '1' or '0' (group/chord members)
-- ARGV[6] chord callback spec ('' = none)
-- ARGV[7] number m of jobs to create now
-- ARGV[8..] m jobs of 5 entries each (id, task, args JSON, priority, overrides
--   as in enqueue.lua; chain: the first step only, index 0; group/chord:
--   members from index 0), then (chain) the remaining step specs, one
--   entry each, in order
-- Derived: <q>job:<id> and <q>wait:<p> for the member jobs
-- A member record, wait list or workflow list of another type (written by
-- something else) refuses the call with WRONGTYPE before anything is written.
-- Returns a code:
-- Code 0 EXISTED: a workflow with this id exists: nothing written
-- Code 1 CREATED: created, its first jobs queued
-- @include checks.lua
-- @include overrides.lua
-- @include now_ms.lua
-- @include push_job.lua
-- @include member_jobs.lua
local qk = {prefix = need_prefix(ARGV[1], KEYS[4], 'prios'), prios = KEYS[4], wake = KEYS[5]}
local wfid = need_text(ARGV[2], 'workflow id')
need_key_for(KEYS[1], 'wf', wfid)
local kind = ARGV[3]
if kind ~= 'chain' and kind ~= 'group' and kind ~= 'chord' then
  refuse('unknown workflow kind', kind)
end
local size = need_int(ARGV[4], 'workflow size', 1)
if ARGV[5] ~= '0' and ARGV[5] ~= '1' then
  refuse('continue on error must be 0 or 1, got', ARGV[5])
end
local m = need_int(ARGV[7], 'job count', 0, size)
if 7 + 5 * m > #ARGV then
  refuse('too few arguments for the jobs, got', #ARGV)
end
local fields = member_jobs(8, m, wfid, 0)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local wrong = member_keys_wrong(qk.prefix, 8, m, {KEYS[2], KEYS[3]})
if wrong then
  return wrong
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'kind', kind, 'st', 'running', 'n', size, 'left', size,
  'coe', ARGV[5], 'et', now)
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'cb', ARGV[6])
end
for i = 0, m - 1 do
  local at = 8 + 5 * i
  push_job(qk, now, ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], fields[i])
  redis.call('RPUSH', KEYS[2], ARGV[at])
end
for i = 8 + 5 * m, #ARGV do
  redis.call('RPUSH', KEYS[3], ARGV[i])
end
return 1
