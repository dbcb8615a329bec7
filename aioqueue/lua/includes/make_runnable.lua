-- make_runnable: mark a job queued and put its id on its priority's wait list
-- (at the front for a job handed back, at the back otherwise), register the
-- priority level and wake an idle fetcher. Q is the queue key prefix.
local function make_runnable(Q, id, jk, front)
  local p = redis.call('HGET', jk, 'p') or '0'
  redis.call('HSET', jk, 'st', 'queued')
  if front then
    redis.call('LPUSH', Q .. 'wait:' .. p, id)
  else
    redis.call('RPUSH', Q .. 'wait:' .. p, id)
  end
  redis.call('ZADD', Q .. 'prios', -tonumber(p), p)
  if redis.call('LLEN', Q .. 'wake') < 8 then
    redis.call('RPUSH', Q .. 'wake', '1')
  end
end
