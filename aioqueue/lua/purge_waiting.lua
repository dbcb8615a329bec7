-- purge_waiting: cancel a batch of waiting (or scheduled) jobs of one queue,
-- oldest first, for an operator's purge. Each purged job ends 'cancelled'
-- (its error says why), exactly as if it had been cancelled one by one: a
-- producer waiting on its result is told, a workflow it belongs to ends, and
-- its record expires after its result TTL. Call again until it removes 0.
--
-- KEYS[1] priority levels  zset   <q>prios
-- KEYS[2] delayed          zset   <q>delayed
-- KEYS[3] wake-up list     list   <q>wake
-- KEYS[4] stats            hash   <q>stats   (field 'purged' counts them)
-- KEYS[5] slot guard       none   <q>guard    never exists (includes/guard.lua)
-- ARGV[1] queue key prefix
-- ARGV[2] which jobs: 'waiting' or 'scheduled'
-- ARGV[3] most jobs to purge in this call (1..10000)
-- ARGV[4] default result TTL (ms) for a record without its own
-- ARGV[5] reason (text stored in the error)
-- Waiting jobs of concurrency groups (groups.lua) go after the wait lists,
-- from up to 100 groups per call.
-- Derived: <q>wait:<p> of the levels in prios, the group keys (groups.lua)
-- A record key of another type (written by something else) is dropped with
-- its id and counted as 'malformed_record'.
-- Returns: {ids removed from the list or set, jobs purged} (an id whose record
--   is gone or not in the expected state is removed but not counted as purged);
--   an error reply (nothing changed) for a bad argument or a wrong key type
-- @include check_types.lua
-- @include checks.lua
-- @include guard.lua
-- @include push_job.lua
-- @include advance_workflow.lua
-- @include notify.lua
-- @include record_fields.lua
local Q = ARGV[1]
local qk = {prefix = Q, prios = KEYS[1], wake = KEYS[3], stats = KEYS[4]}
local which = ARGV[2]
local want = tonumber(ARGV[3])
local default_ttl = tonumber(ARGV[4])
if which ~= 'waiting' and which ~= 'scheduled' then
  return redis.error_reply('ERR purge_waiting: ARGV[2] must be waiting or scheduled')
end
if not want or want < 1 or want > 10000 or not default_ttl or default_ttl <= 0 then
  return redis.error_reply('ERR purge_waiting: bad batch size or TTL')
end
need_guard(Q, KEYS[5])
local checks = {KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'list', KEYS[4], 'hash'}
local levels = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, level in ipairs(levels) do
  checks[#checks + 1] = Q .. 'wait:' .. level
  checks[#checks + 1] = 'list'
end
local wrong = check_types(checks)
if wrong then
  return wrong
end
-- concurrency groups with waiting jobs (checked before the first write too)
local groups = {}
wrong = check_types({Q .. 'gring', 'zset', Q .. 'gpark', 'zset', Q .. 'gstate', 'hash'})
if wrong then
  return wrong
end
for _, zset in ipairs({Q .. 'gring', Q .. 'gpark'}) do
  for _, gid in ipairs(redis.call('ZRANGE', zset, 0, 99)) do
    groups[#groups + 1] = {zset, gid}
    wrong = check_types({Q .. 'gw:' .. gid, 'list'})
    if wrong then
      return wrong
    end
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local err = cjson.encode({type = 'Cancelled', message = ARGV[5], traceback = ''})
local purged = 0
local removed = 0

local function purge_one(id, expected)
  local jk = Q .. 'job:' .. id
  local rec = redis.pcall('HMGET', jk, 'st', 'rt')
  if rec.err then
    redis.call('HINCRBY', KEYS[4], 'malformed_record', 1)
    return
  end
  if rec[1] ~= expected then
    return
  end
  redis.call('HSET', jk, 'st', 'cancelled', 'e', err, 'tf', now)
  advance_workflow(qk, now, jk, 'cancel', err, default_ttl)
  redis.call('PEXPIRE', jk, field_ttl(rec[2], default_ttl))
  notify(Q .. 'done:' .. id, 'cancelled')
  purged = purged + 1
end

if which == 'scheduled' then
  local ids = redis.call('ZRANGE', KEYS[2], 0, want - 1)
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[2], id)
    purge_one(id, 'scheduled')
  end
  removed = #ids
else
  local taken = 0
  for _, level in ipairs(levels) do
    local wait_key = Q .. 'wait:' .. level
    local ids = redis.call('LPOP', wait_key, want - taken)
    if ids then
      taken = taken + #ids
      for _, id in ipairs(ids) do
        purge_one(id, 'queued')
      end
    end
    if redis.call('LLEN', wait_key) == 0 then
      redis.call('ZREM', KEYS[1], level)
    end
    if taken >= want then
      break
    end
  end
  for _, group in ipairs(groups) do
    if taken >= want then
      break
    end
    local list = Q .. 'gw:' .. group[2]
    local ids = redis.call('LPOP', list, want - taken)
    if ids then
      taken = taken + #ids
      redis.call('HINCRBY', Q .. 'gstate', 'waiting', -#ids)
      for _, id in ipairs(ids) do
        purge_one(id, 'queued')
      end
    end
    if redis.call('EXISTS', list) == 0 then
      redis.call('ZREM', group[1], group[2])
    end
  end
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[3])
  end
  removed = taken
end
if purged > 0 then
  redis.call('HINCRBY', KEYS[4], 'purged', purged)
end
return {removed, purged}
