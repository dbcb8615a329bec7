-- progress: record a running job's progress and tell its watchers. Fenced by
-- the lease token so a worker that lost the lease cannot overwrite it.
--
-- KEYS[1] job record       hash   <q>job:<id>
-- ARGV[1] events channel ('<q>done:<id>')
-- ARGV[2] lease token
-- ARGV[3] progress JSON ({"fraction": 0.4, "message": "..."})
-- Returns a code:
-- Code 1 RECORDED: stored and published
-- Code -1 STALE: this token no longer holds the job: nothing written
-- @include notify.lua
local rec = redis.call('HMGET', KEYS[1], 'tk', 'st')
if rec[1] ~= ARGV[2] or rec[2] ~= 'active' then
  return -1
end
redis.call('HSET', KEYS[1], 'pg', ARGV[3])
notify(ARGV[1], 'progress ' .. ARGV[3])
return 1
