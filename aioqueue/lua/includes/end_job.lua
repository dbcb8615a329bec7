-- end_cancelled, end_dead: end a job for good, as every script that ends one
-- does it (cancel, settle, reap, ...): the record's status and error, its
-- expiry, the workflow it belongs to, the queue's counter and its watchers.
-- qk: {prefix, prios, wake, stats, dead} (dead only for end_dead).
-- @include add_error.lua
-- @include advance_workflow.lua
-- @include make_runnable.lua
-- @include notify.lua
-- @include record_fields.lua
local function end_cancelled(qk, now, id, jk, reason, own_ttl, default_ttl)
  local err = cjson.encode({type = 'Cancelled', message = reason, traceback = ''})
  redis.call('HSET', jk, 'st', 'cancelled', 'tf', now, 'e', err)
  advance_workflow(qk, now, jk, 'cancel', err, default_ttl)
  redis.call('PEXPIRE', jk, field_ttl(own_ttl, default_ttl))
  redis.call('HINCRBY', qk.stats, 'cancelled', 1)
  notify(qk.prefix .. 'done:' .. id, 'cancelled')
end

-- err: the error entry (JSON); dead_ttl: how long the dead letter is kept;
-- workflow_ttl: the result TTL of a workflow this ends
local function end_dead(qk, now, id, jk, err, dead_ttl, workflow_ttl)
  add_error(jk, err)
  redis.call('HSET', jk, 'st', 'failed', 'tf', now)
  redis.call('ZADD', qk.dead, now, id)
  redis.call('PEXPIRE', jk, dead_ttl)
  redis.call('HINCRBY', qk.stats, 'failed', 1)
  notify(qk.prefix .. 'done:' .. id, 'failed')
  advance_workflow(qk, now, jk, 'dead', err, workflow_ttl)
end

-- make the job runnable again; if its wait list holds another type (written by
-- something else) it cannot wait anywhere: it ends dead-lettered, saying why,
-- and the stats count 'malformed_wait'
local function runnable_or_dead(qk, now, id, jk, front, dead_ttl, workflow_ttl)
  local wait_key = make_runnable(qk, id, jk, front)
  if wait_key then
    redis.call('HINCRBY', qk.stats, 'malformed_wait', 1)
    end_dead(qk, now, id, jk, cjson.encode({type = 'MalformedQueue', traceback = '',
      message = 'its wait list ' .. wait_key .. ' holds another type of value'}),
      dead_ttl, workflow_ttl)
    return false
  end
  return true
end
