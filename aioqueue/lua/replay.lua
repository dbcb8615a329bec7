-- replay: give dead-lettered jobs fresh attempts under the same id. The
-- delivery count (the fencing token) keeps growing so no old lease holder can
-- settle the replayed job; attempts, lease expiries and cancel flags restart.
--
-- KEYS[1] dead letters     zset   <q>dead
-- KEYS[2] priority levels  zset   <q>prios
-- KEYS[3] wake-up list     list   <q>wake
-- KEYS[4] stats            hash   <q>stats
-- ARGV[1] queue key prefix
-- ARGV[2..] job ids
-- Returns: number of jobs made runnable again (ids not in dead letters are skipped)
-- @include make_runnable.lua
local Q = ARGV[1]
local replayed = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local jk = Q .. 'job:' .. id
  if redis.call('ZREM', KEYS[1], id) == 1 and redis.call('HGET', jk, 'st') == 'failed' then
    redis.call('PERSIST', jk)
    redis.call('HDEL', jk, 'att', 'lx', 'cx', 'e', 'r', 'ts', 'tf', 'w', 'pg', 'due')
    make_runnable(Q, id, jk, false)
    redis.call('HINCRBY', KEYS[4], 'replayed', 1)
    replayed = replayed + 1
  end
end
return replayed
