-- end_cancelled, end_dead: end a job for good, as every script that ends one
-- does it (cancel, settle, reap, ...): the record's status and error, its
-- expiry, the workflow it belongs to, the queue's counter and its watchers.
-- qk: {prefix, prios, wake, stats, dead} (dead only for end_dead).
-- @include add_error.lua
-- @include advance_workflow.lua
-- @include notify.lua
local function end_cancelled(qk, now, id, jk, reason, own_ttl, default_ttl)
  local err = cjson.encode({type = 'Cancelled', message = reason, traceback = ''})
  redis.call('HSET', jk, 'st', 'cancelled', 'tf', now, 'e', err)
  advance_workflow(qk, now, jk, 'cancel', err, default_ttl)
  redis.call('PEXPIRE', jk, tonumber(own_ttl) or default_ttl)
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
