-- flow_limits: global rate limits for claim (GCRA on the server's clock).
-- A limiter allows a start when now >= TAT - tau (TAT: theoretical arrival
-- time, tau = (burst - 1) * T, T = period / count); each start moves TAT to
-- max(TAT, now) + T. Times are in microseconds (integers, exact in a double).
-- fk = {prefix = '<q>', limits = <q>limits, state = <q>limiter, held = <q>held,
--       stats = <q>stats}. Needs check_types.lua.
--   <q>limits  hash  't:<task>' / 'q' (declared by the app) and 'o:t:<task>' /
--                    'o:q' (set by an operator; wins; 'off' = no limit):
--                    'count period_ms burst'
--   <q>limiter hash  same scope names -> TAT (us); 'p:<scope>' -> end of a
--                    pause (RateLimited, us), also for a scope without a limit
--   <q>held    zset  task -> ms when its next start is allowed
--   <q>held:<task>  list  ids held back by the task's limiter, FIFO (status
--                    stays 'queued'; an id whose record is no longer queued
--                    is a leftover, dropped when reached)
local FLOW_UNLIMITED = 1000000000

-- a stored rate 'n period_ms burst' (an operator's or the app's; 'off' or
-- none: false) as GCRA parameters {T, tau} in us
local function flow_rate(text)
  if not text or text == 'off' then
    return false
  end
  local n, period, burst = string.match(text, '^(%d+) (%d+) (%d+)$')
  n, period, burst = tonumber(n), tonumber(period), tonumber(burst)
  if n and n > 0 and period > 0 and burst > 0 then
    local T = period * 1000 / n
    return {T = T, tau = (burst - 1) * T}
  end
  return false
end

local function flow_conf(lim, f)
  local c = lim.conf[f]
  if c == nil then
    local v = redis.call('HMGET', lim.fk.limits, 'o:' .. f, f)
    c = flow_rate(v[1] or v[2])
    lim.conf[f] = c
  end
  return c
end

-- the scope's TAT and pause end (us), read once per claim
local function flow_tat(lim, f)
  local t = lim.tat[f]
  if t == nil then
    local v = redis.call('HMGET', lim.fk.state, f, 'p:' .. f)
    t = tonumber(v[1] or '') or 0
    lim.tat[f] = t
    lim.pause[f] = tonumber(v[2] or '') or 0
  end
  return t
end

-- how many starts scope f allows now, and when (us) the next one is allowed.
-- A TAT beyond now + tau + T (the most a start under the current limit
-- leaves) is cut back to it: a limit changed at runtime applies at once.
local function flow_room(lim, f)
  local c, tat, now = flow_conf(lim, f), flow_tat(lim, f), lim.now
  local paused = lim.pause[f]
  if paused > now then
    return 0, paused
  elseif paused > 0 then
    lim.stale['p:' .. f] = true
  end
  if not c then
    if tat > 0 then lim.stale[f] = true end
    return FLOW_UNLIMITED, now
  end
  if tat > now + c.tau + c.T then
    tat = now + c.tau + c.T
    lim.tat[f] = tat
    lim.dirty[f] = true
  end
  if tat - now > c.tau then
    return 0, tat - c.tau
  end
  return math.floor((c.tau - math.max(tat - now, 0)) / c.T + 1e-9) + 1, now
end

local function flow_take(lim, f, k)
  local c = flow_conf(lim, f)
  if c then
    lim.tat[f] = math.max(flow_tat(lim, f), lim.now) + k * c.T
    lim.dirty[f] = true
  end
end

-- the limiter state of one claim; called only for a queue with a limit,
-- pause, held job or waiting concurrency group (groups.lua): the claim tells
-- with one EXISTS (fk.limits, fk.state, fk.held, <q>gring, <q>gpark) and
-- takes its fast path otherwise
local function flow_open(fk, now_ms)
  return {fk = fk, now = now_ms * 1000, conf = {}, tat = {}, pause = {}, dirty = {}, stale = {},
          holding = {},
          next_us = nil, queue_room = 0}
end

local function flow_note_next(lim, us)
  if not lim.next_us or us < lim.next_us then
    lim.next_us = us
  end
end

-- how many jobs this claim may start under the queue-wide limit (at most want)
local function flow_queue_room(lim, want)
  local room, next_us = flow_room(lim, 'q')
  if room == 0 then
    lim.queue_next_us = next_us
  end
  lim.queue_room = math.min(want, room)
  return lim.queue_room
end

-- hold the id back under its task's limiter: back of <q>held:<task>
local function flow_hold(lim, id, task, next_us)
  redis.call('RPUSH', lim.fk.prefix .. 'held:' .. task, id)
  lim.holding[task] = true
  redis.call('ZADD', lim.fk.held, math.ceil(next_us / 1000), task)
  flow_note_next(lim, next_us)
end

-- may a queued job of this task start now? Takes the tokens if so, else holds
-- it back. A task with held jobs holds newer ones behind them (FIFO). A held
-- list that is not a list (written by something else) cannot hold: the job
-- runs, and the stats count 'malformed_held'.
local function flow_admit(lim, id, task)
  local f = 't:' .. task
  local room, next_us = flow_room(lim, f)
  if lim.holding[task] == nil then
    local list = lim.fk.prefix .. 'held:' .. task
    if check_types({list, 'list'}) then
      lim.holding[task] = 'damaged'
    else
      lim.holding[task] = redis.call('EXISTS', list) == 1
    end
  end
  if lim.holding[task] == 'damaged' then
    redis.call('HINCRBY', lim.fk.stats, 'malformed_held', 1)
  elseif room == 0 or lim.holding[task] then
    if room > 0 then
      next_us = lim.now
    end
    flow_hold(lim, id, task, next_us)
    return false
  end
  flow_take(lim, f, 1)
  flow_take(lim, 'q', 1)
  return true
end

-- start held jobs whose limiter allows it, oldest first, up to room:
-- start(id) leases a queued job (true) or drops a leftover (false)
local function flow_release(lim, room, start)
  local started = 0
  local due = redis.call('ZRANGEBYSCORE', lim.fk.held, '-inf', math.floor(lim.now / 1000),
    'LIMIT', 0, 16)
  for _, task in ipairs(due) do
    local f, list = 't:' .. task, lim.fk.prefix .. 'held:' .. task
    local n, next_us = flow_room(lim, f)
    local scanned = 0
    if check_types({list, 'list'}) then
      n = 0  -- not a list: nothing to take from it; its task is forgotten below
      redis.call('ZREM', lim.fk.held, task)
      redis.call('HINCRBY', lim.fk.stats, 'malformed_held', 1)
    end
    while started < room and n > 0 and scanned < 1000 do
      local id = redis.call('LPOP', list)
      if not id then break end
      scanned = scanned + 1
      if start(id) then
        flow_take(lim, f, 1)
        flow_take(lim, 'q', 1)
        started = started + 1
        n, next_us = flow_room(lim, f)
      end
    end
    if lim.holding[task] == 'damaged' or check_types({list, 'list'}) then
      lim.holding[task] = 'damaged'
    elseif redis.call('EXISTS', list) == 0 then
      redis.call('ZREM', lim.fk.held, task)
      lim.holding[task] = false
    else
      if n > 0 then next_us = lim.now end  -- out of room, not of tokens
      redis.call('ZADD', lim.fk.held, math.ceil(next_us / 1000), task)
      flow_note_next(lim, next_us)
      lim.holding[task] = true
    end
  end
  return started
end

-- write the limiters' new TATs; a pause that has passed on a scope without
-- a limit is forgotten. Returns ms until the next start this claim refused
-- (-1: none): the queue's next token when it is out of them (nothing can
-- start before), else the earliest held task's.
local function flow_close(lim)
  for f, _ in pairs(lim.dirty) do
    redis.call('HSET', lim.fk.state, f, string.format('%d', math.ceil(lim.tat[f])))
  end
  for f, _ in pairs(lim.stale) do
    redis.call('HDEL', lim.fk.state, f)
  end
  local first = redis.call('ZRANGE', lim.fk.held, 0, 0, 'WITHSCORES')
  if first[2] then
    flow_note_next(lim, tonumber(first[2]) * 1000)
  end
  if lim.queue_next_us then
    lim.next_us = lim.queue_next_us
  end
  if not lim.next_us then
    return -1
  end
  return math.max(1, math.ceil((lim.next_us - lim.now) / 1000))
end
