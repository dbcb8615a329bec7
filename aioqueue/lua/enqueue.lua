-- enqueue: create a job record and make it runnable (or scheduled), atomically.
-- Idempotent by job id: if the record exists nothing is written, so a client
-- retry after an unknown outcome never creates a second job.
--
-- KEYS[1] job record       hash    <q>job:<id>
-- KEYS[2] wait list        list    <q>wait:<priority>
-- KEYS[3] priority levels  zset    <q>prios        member = priority, score = -priority
-- KEYS[4] wake-up list     list    <q>wake         tokens that wake idle fetchers
-- KEYS[5] delayed          zset    <q>delayed      member = id, score = due time (ms)
-- KEYS[6] (optional) schedules zset <q>schedules   member = schedule, score = last tick (ms)
-- KEYS[7] (optional) unique key string <q>uniq:<key>  id of the job holding the key
--   (includes/unique.lua); given with KEYS[6] and ARGV[8], ARGV[9] = ''
-- ARGV[1] job id
-- ARGV[2] task name
-- ARGV[3] arguments (JSON object)
-- ARGV[4] priority (integer)
-- ARGV[5] delay in ms relative to server TIME (0 = none)
-- ARGV[6] absolute due time in epoch ms ('' = none)
-- ARGV[7] per-job overrides as alternating name/value, joined by \31 ('' = none);
--   names: mt md to rt, values: integers; tc: the producer's trace context (text)
-- ARGV[8] (optional) schedule name (with KEYS[6])
-- ARGV[9] (optional) its tick (ms): enqueue only if no supervisor fired this
--   tick or a later one, so each tick runs once
-- ARGV[10] (optional) unique mode (with KEYS[7]): unique | debounce | throttle
-- ARGV[11] (optional) the unique key's ttl (ms)
-- ARGV[12] (optional) concurrency group: '<task>\31<key>' ('' = none): the job
--   waits in its group's list and runs under its group's limit (groups.lua)
-- Derived: with a group, the group keys (groups.lua)
-- Returns a code:
-- Code 0 EXISTS: the id exists (same task): nothing written
-- Code 1 QUEUED: created and queued
-- Code 2 SCHEDULED: created and scheduled
-- Code 3 ID_TAKEN: the id exists for another task: nothing written
-- Code 4 TICK_DONE: this schedule tick (or a later one) was already fired
-- With a unique key, a decision on an existing holder is {code, its id}:
-- Code 5 UNIQUE_EXISTS: a job with the key waits or runs: nothing written
-- Code 6 DEBOUNCED: the waiting job with the key took these arguments (and,
--   if scheduled, the new start): no new job
-- Code 7 THROTTLED: the key's window is not over: nothing written
-- @include check_types.lua
-- @include checks.lua
-- @include now_ms.lua
-- @include wake.lua

-- The helpers of overrides, unique keys and concurrency groups are made only
-- for a job that has one of them: Redis runs the whole script per call, and
-- each function is a new closure each time (about 440 instructions).
local function rare_helpers()
  -- @include overrides.lua
  -- @include unique.lua
  -- @include groups.lua
  return {overrides = overrides, unique_args = unique_args, unique_decide = unique_decide,
    unique_take = unique_take, group_push = group_push}
end
local rare = nil

if ARGV[1] == '' or ARGV[2] == '' or ARGV[3] == '' then  -- (no calls when all is well)
  need_text(ARGV[1], 'job id')
  need_text(ARGV[2], 'task name')
  need_text(ARGV[3], 'arguments')
end
need_key_for(KEYS[1], 'job', ARGV[1])
local priority = need_int(ARGV[4], 'priority')
local delay = need_int(ARGV[5], 'delay', 0)
local at = nil
if ARGV[6] ~= '' then
  at = need_int(ARGV[6], 'due time', 0)
end
local extra = nil
if ARGV[7] ~= '' then
  rare = rare_helpers()
  extra = rare.overrides(ARGV[7])
end
local tick = nil
local uq = nil
if KEYS[7] then
  rare = rare or rare_helpers()
  uq = rare.unique_args(KEYS[7], ARGV[10], ARGV[11])
end
if KEYS[6] and ARGV[8] ~= '' then
  need_text(ARGV[8], 'schedule name')
  tick = need_int(ARGV[9], 'tick', 0)
end
local gid = nil
if ARGV[12] and ARGV[12] ~= '' then
  gid = ARGV[12]
  local cut = string.find(gid, '\31', 1, true)
  if not cut or cut == 1 or #gid > 500 or string.find(gid, '\31', cut + 1, true) then
    refuse('a concurrency group must be task, unit separator, key, got', gid)
  end
  if string.sub(gid, 1, cut - 1) ~= ARGV[2] then
    refuse('a concurrency group must name the job\'s task, got', gid)
  end
end
if uq and tick then
  refuse('a schedule tick cannot take a unique key', ARGV[8])
end
-- the record's type also says whether it exists (one TYPE, no EXISTS)
local record = redis.call('TYPE', KEYS[1])['ok']
local wrong = check_types({KEYS[2], 'list', KEYS[3], 'zset', KEYS[4], 'list', KEYS[5], 'zset'})
if not wrong and record ~= 'none' and record ~= 'hash' then
  wrong = check_types({KEYS[1], 'hash'})
end
if not wrong and uq then
  wrong = check_types({KEYS[7], 'string'})
end
if wrong then
  return wrong
end
if record == 'hash' then
  -- idempotent for the same task only (a record without one: a leftover)
  local existing = redis.call('HGET', KEYS[1], 't')
  if existing and existing ~= ARGV[2] then
    return 3
  end
  return 0
end
if tick then
  local last = redis.call('ZSCORE', KEYS[6], ARGV[8])
  if last and tonumber(last) >= tick then
    return 4
  end
  redis.call('ZADD', KEYS[6], tick, ARGV[8])
end
local now = now_ms()
if uq then
  local decided = rare.unique_decide(uq, string.sub(KEYS[1], 1, -(#ARGV[1] + 5)), KEYS[5], now,
    ARGV[3], delay)
  if decided then
    return decided
  end
  rare.unique_take(uq, ARGV[1])
end
local due = 0
if delay > 0 then
  due = now + delay
elseif at then
  due = at
end
-- the record in one table constructor (appending field by field grew the
-- table four times per job)
local scheduled = due > now
local fields = {'t', ARGV[2], 'a', ARGV[3], 'et', now, 'st', scheduled and 'scheduled' or 'queued'}
local n = 8
if scheduled then
  fields[9], fields[10], n = 'due', due, 10
end
if priority ~= 0 then
  fields[n + 1], fields[n + 2], n = 'p', ARGV[4], n + 2
end
if gid then
  fields[n + 1], fields[n + 2], n = 'g', gid, n + 2
end
if extra then
  for i = 1, #extra do
    fields[n + i] = extra[i]
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
if scheduled then
  redis.call('ZADD', KEYS[5], due, ARGV[1])
  -- wake an idle fetcher so it re-reads the next due time
  wake(KEYS[4])
  return 2
end
if gid and (rare or rare_helpers()).group_push(string.sub(KEYS[1], 1, -(#ARGV[1] + 5)), gid,
    ARGV[1], false, nil) then
  wake(KEYS[4])
  return 1
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], priority == 0 and '0' or -priority, ARGV[4])
wake(KEYS[4])
return 1
