-- group_claim: the claim's side of concurrency groups (groups.lua). Each
-- step takes the group at the front of the ring, starts its oldest waiting
-- job if the group has a free slot (and its task's rate limiter a token,
-- and the key's own rate limiter one), and sends the group to the back of
-- the ring; a group at its limit is parked until a slot frees (or until
-- its next token).
-- A key's own rate limit (per-key GCRA, as flow_limits.lua: 'r:<task>'
-- declared, 'o:r:<task>' an operator's in <q>glimits, 'count period_ms
-- burst' or 'off') keeps its TAT (us) in the string <q>gtat:<gid>, which
-- expires when the TAT has passed (a full bucket again): no state is left
-- behind for keys that went quiet. Work per claim is bounded: at most 8 parked
-- groups looked at again and 'scan' ids popped.
-- gc = {Q = '<q>', lim = (flow_open's state), now = ms, lease_ms = ms,
--       leases = <q>leases, stats = <q>stats, scan = ids still allowed,
--       read = function(id) -> jk, rec (claim's read_job),
--       lease = function(id, jk, rec) (claim's lease)}
-- Needs flow_limits.lua and groups.lua.
-- @include flow_limits.lua
local GROUP_UNLIMITED = 1000000000

-- nil when no group has waiting jobs: the claim skips groups altogether
local function group_open(gc)
  if redis.call('EXISTS', gc.Q .. 'gring', gc.Q .. 'gpark') == 0 then
    return nil
  end
  if check_types({gc.Q .. 'gring', 'zset', gc.Q .. 'gpark', 'zset', gc.Q .. 'glimits', 'hash',
      gc.Q .. 'grunning', 'set', gc.Q .. 'gstate', 'hash'}) then
    redis.call('HINCRBY', gc.stats, 'malformed_group', 1)
    return nil
  end
  gc.limits = {}
  gc.rates = {}
  return gc
end

-- the most running jobs of group gid (of task): one key's operator value,
-- else the task's operator value, else the declared one; none = no limit
local function group_limit(gc, gid, task)
  local n = gc.limits[gid]
  if n == nil then
    local v = redis.call('HMGET', gc.Q .. 'glimits', 'o:k:' .. gid, 'o:c:' .. task, 'c:' .. task)
    local text = v[1] or v[2] or v[3]
    n = GROUP_UNLIMITED
    if text and string.match(text, '^%d+$') and tonumber(text) >= 1 then
      n = tonumber(text)
    end
    gc.limits[gid] = n
  end
  return n
end

-- the key rate limit of task's keys: {T, tau} in us, or false
local function group_rate(gc, task)
  local c = gc.rates[task]
  if c == nil then
    local v = redis.call('HMGET', gc.Q .. 'glimits', 'o:r:' .. task, 'r:' .. task)
    c = flow_rate(v[1] or v[2])
    gc.rates[task] = c
  end
  return c
end

local function group_rate_store(gc, gid, tat)
  redis.call('SET', gc.Q .. 'gtat:' .. gid, string.format('%d', math.ceil(tat)), 'PX',
    math.ceil((tat - gc.lim.now) / 1000) + 1)
end

-- 0 when the key may start a job now, else the us at which it may. A TAT
-- beyond what a start under the current limit leaves is cut back (and
-- stored): a changed limit applies within one of its intervals
local function group_rate_wait(gc, gid, c)
  local now = gc.lim.now
  local tat = tonumber(redis.call('GET', gc.Q .. 'gtat:' .. gid) or '') or 0
  if tat > now + c.tau + c.T then
    tat = now + c.tau + c.T
    group_rate_store(gc, gid, tat)
  end
  if tat - now > c.tau then
    return tat - c.tau
  end
  return 0
end

local function group_rate_take(gc, gid, c)
  local now = gc.lim.now
  local tat = math.min(tonumber(redis.call('GET', gc.Q .. 'gtat:' .. gid) or '') or 0,
    now + c.tau + c.T)
  group_rate_store(gc, gid, math.max(tat, now) + c.T)
end

local function group_park(gc, gid, at_ms)
  redis.call('ZREM', gc.Q .. 'gring', gid)
  redis.call('ZADD', gc.Q .. 'gpark', at_ms, gid)
end

-- parked groups whose time has come go back into the ring; a slot whose
-- holder no longer has a lease (it cannot have, once it ended) is freed
local function group_recheck(gc)
  local due = redis.call('ZRANGEBYSCORE', gc.Q .. 'gpark', '-inf', gc.now, 'LIMIT', 0, 8)
  for _, gid in ipairs(due) do
    local run = gc.Q .. 'grun:' .. gid
    if not check_types({run, 'set', gc.Q .. 'gw:' .. gid, 'list'}) then
      for _, id in ipairs(redis.call('SMEMBERS', run)) do
        if not redis.call('ZSCORE', gc.leases, id) then
          redis.call('SREM', run, id)
          redis.call('HINCRBY', gc.stats, 'group_slot_freed', 1)
        end
      end
      redis.call('ZREM', gc.Q .. 'gpark', gid)
      redis.call('ZADD', gc.Q .. 'gring', group_back(gc.Q), gid)
    else
      redis.call('ZREM', gc.Q .. 'gpark', gid)
      redis.call('HINCRBY', gc.stats, 'malformed_group', 1)
    end
  end
end

-- how many of this claim's room go to groups first: all of it when nothing
-- else waits, else half (an odd room's extra one, and a room of 1,
-- alternating between grouped and other jobs from claim to claim)
local function group_share(gc, room, prios)
  if redis.call('EXISTS', prios) == 0 then
    return room
  end
  local turn = redis.call('HINCRBY', gc.Q .. 'gstate', 'turn', 1)
  return math.floor((room + turn % 2) / 2)
end

-- start the front group's oldest job, or park the group, or drop a leftover
local function group_step(gc, gid)
  local list, run = gc.Q .. 'gw:' .. gid, gc.Q .. 'grun:' .. gid
  gc.scan = gc.scan - 1  -- every step counts, whatever it finds: bounded work
  if check_types({list, 'list', run, 'set', gc.Q .. 'gtat:' .. gid, 'string'}) then
    redis.call('ZREM', gc.Q .. 'gring', gid)
    redis.call('HINCRBY', gc.stats, 'malformed_group', 1)
    return
  end
  local id = redis.call('LPOP', list)
  if not id then
    redis.call('ZREM', gc.Q .. 'gring', gid)
    return
  end
  redis.call('HINCRBY', gc.Q .. 'gstate', 'waiting', -1)
  local jk, rec = gc.read(id)
  if rec[1] == 'queued' and not rec[2] then
    gc.lease(id, jk, rec)  -- a record without a task: its worker fails it, as on the plain path
    return
  end
  if rec[1] ~= 'queued' then
    if not rec[1] then
      redis.call('HINCRBY', gc.stats, 'missing_record', 1)
    end
    return  -- ended while it waited (cancelled): a leftover, dropped
  end
  local task = rec[2]
  local n, running = group_limit(gc, gid, task), redis.call('SCARD', run)
  local tokens, next_us = flow_room(gc.lim, 't:' .. task)
  local rate = group_rate(gc, task)
  local key_wait = rate and group_rate_wait(gc, gid, rate) or 0
  if running >= n or tokens == 0 or key_wait > 0 then
    redis.call('LPUSH', list, id)
    redis.call('HINCRBY', gc.Q .. 'gstate', 'waiting', 1)
    if running >= n then
      group_park(gc, gid, gc.now + gc.lease_ms)
    else
      group_park(gc, gid, math.ceil(math.max(tokens == 0 and next_us or 0, key_wait) / 1000))
    end
    return
  end
  if rate then
    group_rate_take(gc, gid, rate)
  end
  gc.lease(id, jk, rec)
  flow_take(gc.lim, 't:' .. task, 1)
  flow_take(gc.lim, 'q', 1)
  redis.call('SADD', run, id)
  redis.call('SADD', gc.Q .. 'grunning', gid)
  if redis.call('EXISTS', list) == 0 then
    redis.call('ZREM', gc.Q .. 'gring', gid)
  elseif running + 1 >= n then
    group_park(gc, gid, gc.now + gc.lease_ms)
  elseif rate and group_rate_wait(gc, gid, rate) > 0 then
    group_park(gc, gid, math.ceil(group_rate_wait(gc, gid, rate) / 1000))
  else
    redis.call('ZADD', gc.Q .. 'gring', group_back(gc.Q), gid)
  end
end

-- start grouped jobs until count() reaches upto or the scan bound is spent
local function group_claim(gc, upto, count)
  if not gc.rechecked then
    gc.rechecked = true
    group_recheck(gc)
  end
  while count() < upto and gc.scan > 0 do
    local front = redis.call('ZRANGE', gc.Q .. 'gring', 0, 0)
    if not front[1] then
      break
    end
    group_step(gc, front[1])
  end
end

-- ms of the earliest parked group's next look (nil: none), for the claim's
-- answer: idle workers sleep until then at most
local function group_next_us(gc)
  local first = redis.call('ZRANGE', gc.Q .. 'gpark', 0, 0, 'WITHSCORES')
  if first[2] then
    return tonumber(first[2]) * 1000
  end
  return nil
end
