-- minute_stats: per-minute counters of a queue (throughput and latency), kept
-- for a bounded window. A script accumulates with minute_add and minute_run
-- while it works and writes once, at its end, with minute_flush: a few
-- commands per script call (per batch of jobs), never an extra round trip.
--
-- Key: <q>m:<minutes since the epoch> (hash), expiring 25 h after it was made
-- (it is written during its minute only). Fields: succeeded, failed, retried,
-- cancelled, expired (leases that ran out); run_n, run_ms, run_max (run time
-- of settled attempts, ms); wait_n, wait_ms, wait_max (enqueue to start of
-- first attempts, ms).
-- The counters are for people: a key of a foreign type is left alone (the
-- counts are dropped) rather than failing the script that settles jobs.
local MINUTE_STATS_TTL_MS = 25 * 3600 * 1000
local minute_acc = {}
-- run and wait summaries of settled attempts: plain upvalues, updated by one
-- call per job (settle runs this for every job of its batch)
local m_run_n, m_run_ms, m_run_max = 0, 0, -1
local m_wait_n, m_wait_ms, m_wait_max = 0, 0, -1

-- an outcome counter (succeeded, failed, retried, cancelled, expired)
local function minute_add(field, n)
  minute_acc[field] = (minute_acc[field] or 0) + n
end

-- one settled attempt that ran run_ms; waited_ms: enqueue to start of a
-- first attempt (nil for a later attempt)
local function minute_run(run_ms, waited_ms)
  m_run_n = m_run_n + 1
  m_run_ms = m_run_ms + run_ms
  if run_ms > m_run_max then m_run_max = run_ms end
  if waited_ms then
    m_wait_n = m_wait_n + 1
    m_wait_ms = m_wait_ms + waited_ms
    if waited_ms > m_wait_max then m_wait_max = waited_ms end
  end
end

-- pcall: a field that holds no integer (written by something else) drops the count
local function minute_incr(key, field, n)
  redis.pcall('HINCRBY', key, field, n)
end

-- the run and wait maxima: one read for both, a write only for a new maximum
local function minute_raise(key)
  local run_max, wait_max = m_run_max, m_wait_max
  local old = redis.call('HMGET', key, 'run_max', 'wait_max')
  if run_max >= 0 and run_max > (tonumber(old[1]) or -1) then
    redis.call('HSET', key, 'run_max', run_max)
  end
  if wait_max >= 0 and wait_max > (tonumber(old[2]) or -1) then
    redis.call('HSET', key, 'wait_max', wait_max)
  end
end

local function minute_flush(Q, now)
  if next(minute_acc) == nil and m_run_n == 0 then
    return
  end
  local key = Q .. 'm:' .. math.floor(now / 60000)
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= 'hash' then
    return
  end
  for field, n in pairs(minute_acc) do
    minute_incr(key, field, n)
  end
  if m_run_n > 0 then
    minute_incr(key, 'run_n', m_run_n)
    minute_incr(key, 'run_ms', m_run_ms)
  end
  if m_wait_n > 0 then
    minute_incr(key, 'wait_n', m_wait_n)
    minute_incr(key, 'wait_ms', m_wait_ms)
  end
  if m_run_n > 0 or m_wait_n > 0 then
    minute_raise(key)
  end
  if found == 'none' then
    -- a minute's key is written during its minute only: its time to live,
    -- set when it is made, runs out 25 h after its last write, give or take
    -- that minute
    redis.call('PEXPIRE', key, MINUTE_STATS_TTL_MS)
  end
  minute_acc = {}
  m_run_n, m_run_ms, m_run_max = 0, 0, -1
  m_wait_n, m_wait_ms, m_wait_max = 0, 0, -1
end
