-- replay: give dead-lettered jobs fresh attempts under the same id. The
-- fencing token ('tk') keeps growing so no old lease holder can
-- settle the replayed job; attempts, lease expiries and cancel flags restart
-- (the error history stays bounded: see add_error).
--
-- KEYS[1] dead letters     zset   <q>dead
-- KEYS[2] priority levels  zset   <q>prios
-- KEYS[3] wake-up list     list   <q>wake
-- KEYS[4] stats            hash   <q>stats
-- KEYS[5] slot guard       none   <q>guard    never exists (includes/guard.lua)
-- KEYS[6..] job records    hash   <q>job:<id>, one per ARGV group, in order
-- ARGV[1] queue key prefix
-- ARGV[2..] job ids
-- Derived: <q>wait:<p> for the record's priority
-- An id whose record key holds another type (written by something else) leaves
-- the dead letters, counted as 'malformed_record'; a job whose wait list holds
-- another type stays dead-lettered, counted as 'malformed_wait'.
-- A queue key of another type refuses the call before anything is written.
-- Returns: number of jobs made runnable again (ids not in dead letters are skipped)
-- @include check_types.lua
-- @include checks.lua
-- @include guard.lua
-- @include make_runnable.lua
local qk = {prefix = need_prefix(ARGV[1], KEYS[2], 'prios'), prios = KEYS[2], wake = KEYS[3],
  stats = KEYS[4]}
need_guard(qk.prefix, KEYS[5])
if #ARGV - 1 ~= #KEYS - 5 then
  refuse('want one job record key per id, got keys/args', #KEYS .. '/' .. #ARGV)
end
for i = 2, #ARGV do
  need_key_for(KEYS[4 + i], 'job', ARGV[i])
end
local wrong = check_types({KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'list', KEYS[4], 'hash'})
if wrong then
  return wrong
end
local replayed = 0
for i = 2, #ARGV do
  local id, jk = ARGV[i], KEYS[4 + i]
  if redis.call('ZSCORE', KEYS[1], id) then
    local status = redis.pcall('HGET', jk, 'st')
    if type(status) == 'table' then
      redis.call('ZREM', KEYS[1], id)
      redis.call('HINCRBY', KEYS[4], 'malformed_record', 1)
    elseif status ~= 'failed' then
      redis.call('ZREM', KEYS[1], id)  -- no record, or it is not dead: a leftover
    elseif make_runnable(qk, id, jk, false) then
      redis.call('HINCRBY', KEYS[4], 'malformed_wait', 1)
    else
      redis.call('ZREM', KEYS[1], id)
      redis.call('PERSIST', jk)
      redis.call('HDEL', jk, 'att', 'lx', 'cx', 'e', 'r', 'ts', 'tf', 'w', 'pg', 'due')
      redis.call('HINCRBY', KEYS[4], 'replayed', 1)
      replayed = replayed + 1
    end
  end
end
return replayed
