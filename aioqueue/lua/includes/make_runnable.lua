-- make_runnable: mark a job queued and put its id on its priority's wait list
-- (at the front for a job handed back, at the back otherwise), register the
-- priority level and wake an idle fetcher.
-- qk: {prefix = '<q>', prios = <q>prios, wake = <q>wake, stats = <q>stats};
-- the wait list <q>wait:<p> is derived from the record's priority. A job with
-- a concurrency group ('g') waits in its group's list instead (groups.lua).
-- jk must hold a hash (the caller read it). Answers nil when the job waits,
-- or the name of its wait list when that key holds another type (written by
-- something else): then nothing was written and the caller decides.
-- @include wake.lua
-- @include check_types.lua
-- @include groups.lua
-- @include record_fields.lua
local function make_runnable(qk, id, jk, front)
  local rec = redis.call('HMGET', jk, 'p', 'g')
  if rec[2] and group_push(qk.prefix, rec[2], id, front, qk.stats) then
    redis.call('HSET', jk, 'st', 'queued')
    wake(qk.wake)
    return nil
  end
  -- none, or not an integer (a damaged record): it runs at 0, never fails half-way
  local n = field_int(rec[1], -FIELD_MAX, FIELD_MAX) or 0
  local p = rec[1]
  if n == 0 then
    p = '0'
  elseif p ~= string.format('%d', n) then
    p = string.format('%d', n)  -- '1e3', '05': the level's one name
  end
  local wait_key = qk.prefix .. 'wait:' .. p
  if type(redis.pcall(front and 'LPUSH' or 'RPUSH', wait_key, id)) == 'table' then
    return wait_key
  end
  redis.call('HSET', jk, 'st', 'queued')
  redis.call('ZADD', qk.prios, -n, p)
  wake(qk.wake)
  return nil
end
