-- push_job: create a runnable job record and put it at the back of its
-- priority's wait list, waking an idle fetcher. Used by scripts that create
-- jobs as a side effect (workflows). qk as in make_runnable; p is the
-- priority (decimal text); fields a flat list of extra record fields (the
-- workflow link, the task's overrides). The record <q>job:<id> and the wait
-- list <q>wait:<p> are derived. Answers true when it created the job, false
-- when the id exists (nothing written), nil when its wait list holds another
-- type (nothing written: the caller decides).
-- @include wake.lua
local function push_job(qk, now, id, task, args, p, fields)
  local jk = qk.prefix .. 'job:' .. id
  if redis.call('EXISTS', jk) == 1 then
    return false
  end
  if type(redis.pcall('RPUSH', qk.prefix .. 'wait:' .. p, id)) == 'table' then
    return nil
  end
  redis.call('HSET', jk, 't', task, 'a', args, 'et', now, 'st', 'queued', unpack(fields))
  if p ~= '0' then
    redis.call('HSET', jk, 'p', p)
  end
  redis.call('ZADD', qk.prios, -tonumber(p), p)
  wake(qk.wake)
  return true
end
