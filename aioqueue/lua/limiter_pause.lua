-- limiter_pause: stop a task's rate limiter for a while on every worker (a
-- task raised RateLimited: the outside world said "too many requests").
-- The pause ends at now + pause (a later pause already set wins); then the
-- task starts at its limit's pace, without a burst. A task without a limit
-- is paused the same way. Held jobs of the task are looked at again when the
-- pause ends.
--
-- KEYS[1] limits   hash  <q>limits   (read: the effective limit)
-- KEYS[2] limiter  hash  <q>limiter  scope -> TAT (us), 'p:<scope>' -> pause end (us)
-- KEYS[3] held     zset  <q>held     task -> ms when its next held job may start
-- ARGV[1] queue key prefix ('<prefix>:{<queue>}:')
-- ARGV[2] task name
-- ARGV[3] pause (ms, integer >= 0)
-- Returns: the server time (ms) at which the pause ends
-- @include check_types.lua
-- @include checks.lua
-- @include now_ms.lua
-- @include flow_limits.lua
local prefix = need_prefix(ARGV[1], KEYS[1], 'limits')
local task = need_text(ARGV[2], 'task name')
local pause = need_int(ARGV[3], 'pause', 0, 30 * 86400000)
local wrong = check_types({KEYS[1], 'hash', KEYS[2], 'hash', KEYS[3], 'zset'})
if wrong then
  return wrong
end
local now = now_ms()
local lim = {fk = {prefix = prefix, limits = KEYS[1], state = KEYS[2], held = KEYS[3]},
  now = now * 1000, conf = {}, tat = {}, pause = {}, dirty = {}, stale = {}, holding = {}}
local f = 't:' .. task
local c = flow_conf(lim, f)
local until_us = (now + pause) * 1000
flow_tat(lim, f)
if lim.pause[f] < until_us then
  redis.call('HSET', KEYS[2], 'p:' .. f, string.format('%d', until_us))
end
if c then
  -- no burst right after the pause: the limit's pace from its end
  redis.call('HSET', KEYS[2], f, string.format('%d', math.ceil(until_us + c.tau)))
end
local score = redis.call('ZSCORE', KEYS[3], task)
if score and tonumber(score) < now + pause then
  redis.call('ZADD', KEYS[3], now + pause, task)
end
return now + pause
