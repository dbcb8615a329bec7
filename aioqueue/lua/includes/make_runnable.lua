-- make_runnable: mark a job queued and put its id on its priority's wait list
-- (at the front for a job handed back, at the back otherwise), register the
-- priority level and wake an idle fetcher.
-- qk: {prefix = '<q>', prios = <q>prios, wake = <q>wake, stats = <q>stats};
-- the wait list <q>wait:<p> is derived from the record's priority. A job with
-- a concurrency group ('g') waits in its group's list instead (groups.lua).
-- @include wake.lua
-- @include check_types.lua
-- @include groups.lua
local function make_runnable(qk, id, jk, front)
  local rec = redis.call('HMGET', jk, 'p', 'g')
  local p = rec[1]
  if rec[2] and group_push(qk.prefix, rec[2], id, front, qk.stats) then
    redis.call('HSET', jk, 'st', 'queued')
    wake(qk.wake)
    return
  end
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
