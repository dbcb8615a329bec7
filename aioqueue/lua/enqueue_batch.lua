-- enqueue_batch: enqueue many jobs of one task with the same options in one
-- script call (the per-call cost of a script is larger than a job's writes).
-- Same semantics per job as enqueue.lua: idempotent by job id.
--
-- KEYS[1] wait list        list    <q>wait:<priority>
-- KEYS[2] priority levels  zset    <q>prios
-- KEYS[3] wake-up list     list    <q>wake
-- KEYS[4] delayed          zset    <q>delayed
-- KEYS[5..] job records    hash    <q>job:<id>, one per ARGV group, in order
-- ARGV[1] priority (integer)
-- ARGV[2] delay in ms relative to server TIME (0 = none)
-- ARGV[3] absolute due time in epoch ms ('' = none)
-- ARGV[4] per-job overrides as in enqueue.lua ('' = none)
-- ARGV[5..] triples: job id, task name, arguments JSON
-- Returns: one code per job (the codes of enqueue.lua):
-- Code 0 EXISTS: the id exists (same task): nothing written
-- Code 1 QUEUED: created and queued
-- Code 2 SCHEDULED: created and scheduled
-- Code 3 ID_TAKEN: the id exists for another task: nothing written
-- @include check_types.lua
-- @include checks.lua
-- @include overrides.lua
-- @include now_ms.lua
-- @include wake.lua
local priority = need_int(ARGV[1], 'priority')
local delay = need_int(ARGV[2], 'delay', 0)
local at = nil
if ARGV[3] ~= '' then
  at = need_int(ARGV[3], 'due time', 0)
end
local common = overrides(ARGV[4])
local jobs = (#ARGV - 4) / 3
if jobs ~= math.floor(jobs) or jobs ~= #KEYS - 4 then
  refuse('want one job record key per (id, task, arguments) triple, got keys/args', #KEYS .. '/' .. #ARGV)
end
for j = 1, jobs do
  local i = 2 + 3 * j
  need_text(ARGV[i], 'job id')
  need_key_for(KEYS[4 + j], 'job', ARGV[i])
  need_text(ARGV[i + 1], 'task name')
  need_text(ARGV[i + 2], 'arguments')
end
local wrong = check_types({KEYS[1], 'list', KEYS[2], 'zset', KEYS[3], 'list', KEYS[4], 'zset'})
if wrong then
  return wrong
end
-- each record's type also says whether it exists (one TYPE per job, no EXISTS)
local exists = {}
for j = 1, jobs do
  local found = redis.call('TYPE', KEYS[4 + j])['ok']
  if found == 'hash' then
    exists[KEYS[4 + j]] = true
  elseif found ~= 'none' then
    return check_types({KEYS[4 + j], 'hash'})
  end
end
local now = now_ms()
local due = 0
if delay > 0 then
  due = now + delay
elseif at then
  due = at
end
common[#common + 1] = 'et'
common[#common + 1] = now
if priority ~= 0 then
  common[#common + 1] = 'p'
  common[#common + 1] = ARGV[1]
end
local scheduled = due > now
if scheduled then
  common[#common + 1] = 'st'
  common[#common + 1] = 'scheduled'
  common[#common + 1] = 'due'
  common[#common + 1] = due
else
  common[#common + 1] = 'st'
  common[#common + 1] = 'queued'
end
local codes = {}
local queued = {}
for j = 1, jobs do
  local i = 2 + 3 * j
  local id, jk = ARGV[i], KEYS[4 + j]
  if exists[jk] then
    -- idempotent for the same task only (a record without one: a leftover)
    local existing = redis.call('HGET', jk, 't')
    codes[#codes + 1] = (existing and existing ~= ARGV[i + 1]) and 3 or 0
  else
    exists[jk] = true  -- the same id twice in one batch: the first one wins
    redis.call('HSET', jk, 't', ARGV[i + 1], 'a', ARGV[i + 2], unpack(common))
    if scheduled then
      redis.call('ZADD', KEYS[4], due, id)
      codes[#codes + 1] = 2
    else
      queued[#queued + 1] = id
      codes[#codes + 1] = 1
    end
  end
end
if #queued > 0 then
  for i = 1, #queued, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(queued, i, math.min(i + 999, #queued)))
  end
  redis.call('ZADD', KEYS[2], -priority, ARGV[1])
end
if #codes > 0 then
  wake(KEYS[3])
end
return codes
