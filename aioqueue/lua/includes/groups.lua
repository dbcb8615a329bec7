-- groups: per-key concurrency. A job with a concurrency key belongs to the
-- group gid = task .. '\31' .. key (record field 'g'); at most N jobs of a
-- group run at once (N: the task's max_concurrency, or an operator's value),
-- and the claim serves groups round-robin, one job per group per turn, so a
-- group with a long backlog cannot starve another's single job.
-- Keys derived from the queue prefix Q (all in the queue's slot):
--   <q>gring        zset  gid -> turn: groups with waiting jobs and a free
--                         slot as far as known; the lowest turn goes next
--   <q>gpark        zset  gid -> ms when it is looked at again: groups with
--                         waiting jobs at their limit (or whose task's rate
--                         limiter has no token). Freeing a slot moves the group
--                         back into the ring at once; the time is the safety
--                         net (a slot whose holder lost its lease is freed then)
--   <q>gw:<gid>     list  the group's waiting ids, FIFO (status 'queued'; an id
--                         whose record is no longer queued is a leftover, dropped
--                         when reached)
--   <q>grun:<gid>   set   ids of the group's running (leased) jobs: its slots
--   <q>grunning     set   gids with running jobs
--   <q>glimits      hash  'c:<task>' max running per key declared by the app,
--                         'o:c:<task>' an operator's, 'o:k:<gid>' one key's
--                         (operator); value a count or 'off'
--   <q>gstate       hash  'waiting' ids in gw lists, 'turn' the claim's
--                         alternation between grouped and other jobs
--   <q>glimits also holds 'r:<task>' / 'o:r:<task>': the rate limit of each
--   key of the task, whose state is <q>gtat:<gid> (group_claim.lua)
-- A group key of the wrong type (written by something else) cannot hold:
-- the job then waits ungrouped (group_push answers false) and the stats
-- count 'malformed_group'. Needs wake.lua and check_types.lua.

-- nil when the group's keys (and the queue's group keys) have their types
local function group_damaged(Q, gid)
  return check_types({Q .. 'gw:' .. gid, 'list', Q .. 'grun:' .. gid, 'set', Q .. 'gring', 'zset',
    Q .. 'gpark', 'zset', Q .. 'grunning', 'set', Q .. 'glimits', 'hash', Q .. 'gstate', 'hash'})
end

-- the turn after the last group in the ring (the back of the line)
local function group_back(Q)
  local last = redis.call('ZRANGE', Q .. 'gring', -1, -1, 'WITHSCORES')
  return (tonumber(last[2]) or 0) + 1
end

-- make job id of group gid wait (front: a hand-back, runs first in its group);
-- the group joins the back of the ring unless it is in it or parked. False
-- (nothing written) when a group key is damaged.
local function group_push(Q, gid, id, front, stats)
  if group_damaged(Q, gid) then
    if stats then redis.call('HINCRBY', stats, 'malformed_group', 1) end
    return false
  end
  redis.call(front and 'LPUSH' or 'RPUSH', Q .. 'gw:' .. gid, id)
  redis.call('HINCRBY', Q .. 'gstate', 'waiting', 1)
  if not redis.call('ZSCORE', Q .. 'gpark', gid) then
    redis.call('ZADD', Q .. 'gring', 'NX', group_back(Q), gid)
  end
  return true
end

-- job id of group gid no longer runs (settled, reaped): its slot is free; a
-- parked group goes back into the ring and an idle worker is woken
local function group_release(Q, gid, id, wake_key)
  if group_damaged(Q, gid) then
    return
  end
  if redis.call('SREM', Q .. 'grun:' .. gid, id) == 0 then
    return
  end
  if redis.call('EXISTS', Q .. 'grun:' .. gid) == 0 then
    redis.call('SREM', Q .. 'grunning', gid)
  end
  if redis.call('ZREM', Q .. 'gpark', gid) == 1 then
    redis.call('ZADD', Q .. 'gring', group_back(Q), gid)
    wake(wake_key)
  end
end
