-- make_runnable: mark a job queued and put its id on its priority's wait list
-- (at the front for a job handed back, at the back otherwise), register the
-- priority level and wake an idle fetcher.
-- qk: {prefix = '<q>', prios = <q>prios, wake = <q>wake}; the wait list
-- <q>wait:<p> is derived from the record's priority.
-- @include wake.lua
local function make_runnable(qk, id, jk, front)
  local p = redis.call('HGET', jk, 'p')
  if not tonumber(p) then
    p = '0'  -- none, or not a number (a damaged record): run it at 0, never fail half-way
  end
  redis.call('HSET', jk, 'st', 'queued')
  if front then
    redis.call('LPUSH', qk.prefix .. 'wait:' .. p, id)
  else
    redis.call('RPUSH', qk.prefix .. 'wait:' .. p, id)
  end
  redis.call('ZADD', qk.prios, -tonumber(p), p)
  wake(qk.wake)
end
