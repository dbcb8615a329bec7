-- push_job: create a runnable job record and put it at the back of its wait
-- list, waking an idle fetcher. Used by scripts that create jobs as a side
-- effect (workflows). Q is the queue key prefix; fields is a flat list of
-- extra record fields.
local function push_job(Q, now, id, task, args, fields)
  local jk = Q .. 'job:' .. id
  if redis.call('EXISTS', jk) == 1 then
    return false
  end
  redis.call('HSET', jk, 't', task, 'a', args, 'et', now, 'st', 'queued', unpack(fields))
  redis.call('RPUSH', Q .. 'wait:0', id)
  redis.call('ZADD', Q .. 'prios', 0, '0')
  if redis.call('LLEN', Q .. 'wake') < 8 then
    redis.call('RPUSH', Q .. 'wake', '1')
  end
  return true
end
