-- purge: delete dead-lettered jobs and their records. Only ids that are in
-- the dead-letter set are touched, so a purge never deletes a live job.
--
-- KEYS[1] dead letters     zset   <q>dead
-- KEYS[2] slot guard       none   <q>guard    never exists (includes/guard.lua)
-- ARGV[1] queue key prefix
-- ARGV[2..] job ids ('*' alone: the oldest 1000 dead letters)
-- Derived: <q>job:<id> for the ids (read from the dead letters with '*')
-- Returns: number of jobs deleted
-- @include checks.lua
-- @include guard.lua
local Q = need_prefix(ARGV[1], KEYS[1], 'dead')
need_guard(Q, KEYS[2])
local ids = {}
if ARGV[2] == '*' then
  ids = redis.call('ZRANGE', KEYS[1], 0, 999)
else
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local purged = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('DEL', Q .. 'job:' .. id)
    purged = purged + 1
  end
end
return purged
