-- workflow: create a workflow (chain, group or chord) and its first member
-- jobs, atomically. Idempotent by workflow id.
--
-- KEYS[1] workflow record  hash   <q>wf:<id>
-- ARGV[1] queue key prefix
-- ARGV[2] workflow id
-- ARGV[3] kind: 'chain' | 'group' | 'chord'
-- ARGV[4] number of members (group/chord) or steps (chain)
-- ARGV[5] continue on error: '1' or '0' (group/chord members)
-- ARGV[6] chord callback spec ('' = none)
-- ARGV[7] number m of jobs to create now, then m triples: id, task, args JSON
--   (chain: the first step only, index 0; group/chord: every member, index i)
-- ARGV[8 + 3m ..] chain: the remaining step specs, in order
-- Returns: 1 created, 0 already existed
-- @include push_job.lua
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local Q, wfid, kind = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'kind', kind, 'st', 'running', 'n', ARGV[4], 'left', ARGV[4],
  'coe', ARGV[5], 'et', now)
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'cb', ARGV[6])
end
local m = tonumber(ARGV[7])
for i = 0, m - 1 do
  local id = ARGV[8 + 3 * i]
  push_job(Q, now, id, ARGV[9 + 3 * i], ARGV[10 + 3 * i], {'wf', wfid, 'wi', i})
  redis.call('RPUSH', Q .. 'wfm:' .. wfid, id)
end
for i = 8 + 3 * m, #ARGV do
  redis.call('RPUSH', Q .. 'wfc:' .. wfid, ARGV[i])
end
return 1
