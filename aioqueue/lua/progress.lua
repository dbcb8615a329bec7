-- progress: record a running job's progress and tell its watchers. Fenced by
-- the lease token so a worker that lost the lease cannot overwrite it.
--
-- KEYS[1] job record       hash   <q>job:<id>
-- ARGV[1] events channel ('<q>done:<id>')
-- ARGV[2] lease token
-- ARGV[3] progress JSON ({"fraction": 0.4, "message": "..."})
-- Returns: 1 recorded, -1 stale token
if redis.call('HGET', KEYS[1], 'dlv') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'st') ~= 'active' then
  return -1
end
redis.call('HSET', KEYS[1], 'pg', ARGV[3])
redis.call('PUBLISH', ARGV[1], 'progress ' .. ARGV[3])
return 1
