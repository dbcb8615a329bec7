-- claim: promote due scheduled jobs, then reserve up to N runnable jobs for
-- one worker, in one round trip.
-- Each claimed job leaves its wait list, gets a lease (deadline from server
-- TIME) and a fencing token, all in this one atomic step, so no job is ever
-- moved without being leased. The token ('tk') is max(previous token + 1,
-- server time in ms): it grows with every delivery and, because the clock
-- moves on, also after Redis lost its last writes (an AOF fsynced every
-- second after a machine crash, a failover), so a delivery the server forgot
-- can never share its token with a later one.
-- A retry with the same reservation id returns the same jobs again instead of
-- claiming more: a lost reply costs nothing.
-- A paused queue (key '<q>paused' exists, set by an operator) leases nothing:
-- running jobs finish, due jobs are still promoted, a reservation's retry still
-- answers, and the wake-up tokens are dropped so idle workers block instead of
-- spinning; resuming pushes one.
--
-- KEYS[1] priority levels  zset   <q>prios    member = priority, score = -priority
-- KEYS[2] leases           zset   <q>leases   member = id, score = lease deadline (ms)
-- KEYS[3] wake-up list     list   <q>wake
-- KEYS[4] stats            hash   <q>stats
-- KEYS[5] delayed          zset   <q>delayed  member = id, score = due time (ms)
-- KEYS[6] reservation      string <q>rsv:<reservation id>  the ids of this claim
-- KEYS[7] paused flag      string <q>paused   exists while the queue is paused
-- KEYS[8] rate limits      hash   <q>limits   (flow_limits.lua)
-- KEYS[9] limiter state    hash   <q>limiter  scope -> GCRA TAT (us)
-- KEYS[10] held tasks      zset   <q>held     task -> ms its next held job may start
-- ARGV[1] queue key prefix ('<prefix>:{<queue>}:')
-- ARGV[2] max jobs to claim (0: only promote due jobs and report the next due time)
-- ARGV[3] lease duration (ms, >= 1)
-- ARGV[4] worker id
-- ARGV[5] most scheduled jobs to promote in this call (>= 0)
-- Rate limits (flow_limits.lua): a job whose task's limiter has no token
-- left is held back (list <q>held:<task>, still 'queued') instead of leased;
-- held jobs start first once their limiter allows; a queue-wide limit caps
-- how many jobs one claim starts. The next-due answer then includes the
-- next start a limiter refused, so idle workers sleep until then.
-- Concurrency groups (groups.lua, group_claim.lua): jobs with a concurrency
-- key wait in their group's list; groups are served round-robin, each up to
-- its limit of running jobs, sharing the claim half and half with other jobs
-- when both wait. The next-due answer includes the earliest parked group.
-- Derived: <q>job:<id>, <q>wait:<p> and <q>held:<task> for ids, priorities
--   and task names read here; the group keys (groups.lua); channel <q>done:<id>
-- Returns: flat array: ms until the next scheduled job is due (-1 if none),
--   then 10 entries per job:
--   id, token, task, args, attempt, max_tries, timeout_ms, enqueued_ms, result_ttl_ms,
--   trace context ('' = none: the field 'tc' is written only by apps with tracing on)
-- @include check_types.lua
-- @include checks.lua
-- @include now_ms.lua
-- @include notify.lua

-- The flow-control helpers (limits, groups) are made only for a queue that
-- has them: Redis runs the whole script per call, and each of their ~25
-- functions would be a new closure on every claim.
local function flow_helpers()
  -- @include flow_limits.lua
  -- @include groups.lua
  -- @include group_claim.lua
  return {open = flow_open, queue_room = flow_queue_room, release = flow_release,
    admit = flow_admit, note_next = flow_note_next, close = flow_close, push = group_push,
    group_open = group_open, share = group_share, claim = group_claim,
    next_us = group_next_us}
end
local F = nil

local Q = need_prefix(ARGV[1], KEYS[1], 'prios')
local want = need_int(ARGV[2], 'max jobs', 0, 100000)
local lease_ms = need_int(ARGV[3], 'lease', 1)
local worker = need_text(ARGV[4], 'worker id')
local promote = need_int(ARGV[5], 'promote limit', 0, 1000000)
-- a queue with limits or groups has one of these keys (the flow keys' types
-- matter only then)
local limited = redis.call('EXISTS', KEYS[8], KEYS[9], KEYS[10], Q .. 'gring', Q .. 'gpark') > 0
local wrong = check_types({KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'list', KEYS[4], 'hash',
  KEYS[5], 'zset', KEYS[6], 'string', KEYS[7], 'string'})
if not wrong and limited then
  wrong = check_types({KEYS[8], 'hash', KEYS[9], 'hash', KEYS[10], 'zset'})
end
if wrong then
  return wrong
end
local now = now_ms()
local deadline = now + lease_ms
-- as text once: a number argument to redis.call is formatted (snprintf) on
-- every call, and these go into every leased job's commands
local now_text = string.format('%d', now)
local deadline_text = string.format('%d', deadline)
local out = {-1}
local n_out = 1

local function emit(id, token, rec, tc)
  local n = n_out
  out[n + 1] = id
  out[n + 2] = token
  out[n + 3] = rec[2]
  out[n + 4] = rec[3]
  out[n + 5] = rec[4] or '1'
  out[n + 6] = rec[5] or ''
  out[n + 7] = rec[6] or ''
  out[n + 8] = rec[7] or ''
  out[n + 9] = rec[8] or ''
  out[n + 10] = tc or ''
  n_out = n + 10
end

local function next_due()
  local nxt = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if nxt[2] then
    out[1] = math.max(0, tonumber(nxt[2]) - now)
  end
end

local previous = redis.call('GET', KEYS[6])
if previous then
  for id in string.gmatch(previous, '%S+') do
    local jk = Q .. 'job:' .. id
    -- pcall: a record turned into another type since is left out of the answer
    local rec = redis.pcall('HMGET', jk, 'st', 't', 'a', 'att', 'mt', 'to', 'et', 'rt', 'w', 'tk',
      'tc')
    if not rec.err and rec[1] == 'active' and rec[9] == worker and rec[10] and redis.call('ZSCORE', KEYS[2], id) then
      emit(id, rec[10], rec, rec[11])
    end
  end
  next_due()
  return out
end

-- the delayed-job promoter: due jobs join the back of their wait list
local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, promote)
for _, id in ipairs(due) do
  local jk = Q .. 'job:' .. id
  if check_types({jk, 'hash'}) then
    -- not a record of ours: drop the id, count it
    redis.call('ZREM', KEYS[5], id)
    redis.call('HINCRBY', KEYS[4], 'malformed_record', 1)
  else
    local rec = redis.call('HMGET', jk, 'st', 'p', 'g')
    local p = rec[2] or '0'
    local grouped = rec[3] and rec[1] == 'scheduled'
    if grouped then
      F = F or flow_helpers()  -- a grouped job: to its group's list
    end
    if grouped and F.push(Q, rec[3], id, false, KEYS[4]) then
      limited = true  -- its group's keys exist now
      redis.call('ZREM', KEYS[5], id)
      redis.call('HSET', jk, 'st', 'queued')
    elseif rec[1] ~= 'scheduled' or not tonumber(p) then
      redis.call('ZREM', KEYS[5], id)
      if rec[1] == 'scheduled' then
        redis.call('HINCRBY', KEYS[4], 'malformed_record', 1)
      end
    elseif not check_types({Q .. 'wait:' .. p, 'list'}) then
      redis.call('ZREM', KEYS[5], id)
      redis.call('HSET', jk, 'st', 'queued')
      redis.call('RPUSH', Q .. 'wait:' .. p, id)
      redis.call('ZADD', KEYS[1], -tonumber(p), p)
    end
  end
end

if redis.call('EXISTS', KEYS[7]) == 1 then
  -- paused: lease nothing; the wake-up tokens would only spin idle fetchers
  redis.call('DEL', KEYS[3])
  next_due()
  return out
end
if want == 0 then
  -- no room: only the promotion and the next due time were wanted
  next_due()
  return out
end

local claimed = {}

-- lease one queued job to this worker (rec: its HMGET below)
local function lease(id, jk, rec)
  local token = now_text
  if rec[9] then  -- a later delivery (no C call for a first one)
    local last = tonumber(rec[9])
    if last and last >= now and last < 9007199254740991 then
      token = string.format('%d', last + 1)
    end
  end
  -- the delivery count, read with the record: a count that is not an
  -- integer (written by something else) starts again at 1
  local dlv = '1'
  if rec[11] then
    local n = tonumber(rec[11])
    if n and n >= 0 and n < 9007199254740991 and n % 1 == 0 then
      dlv = string.format('%d', n + 1)
    end
  end
  redis.call('HSET', jk, 'st', 'active', 'w', worker, 'ts', now_text, 'tk', token, 'dlv', dlv)
  redis.call('ZADD', KEYS[2], deadline_text, id)
  claimed[#claimed + 1] = id
  notify(Q .. 'done:' .. id, 'active')
  emit(id, token, rec, rec[10])
end

local function read_job(id)
  local jk = Q .. 'job:' .. id
  -- pcall: a key of another type answers WRONGTYPE instead of stopping the
  -- script half-way (cheaper than asking TYPE first, for every job)
  local rec = redis.pcall('HMGET', jk, 'st', 't', 'a', 'att', 'mt', 'to', 'et', 'rt', 'tk', 'tc',
    'dlv')
  if rec.err then
    redis.call('HINCRBY', KEYS[4], 'malformed_record', '1')
    return jk, {'not ours'}
  end
  return jk, rec
end

local lim = nil
if limited then
  F = F or flow_helpers()
  lim = F.open({prefix = Q, limits = KEYS[8], state = KEYS[9], held = KEYS[10],
    stats = KEYS[4]}, now)
end
local room = want
if lim then
  room = F.queue_room(lim, want)
  F.release(lim, room, function(id)
    local jk, rec = read_job(id)
    if rec[1] == 'queued' then
      lease(id, jk, rec)
      return true
    end
    return false  -- ended (cancelled while held) or gone: a leftover
  end)
  if room == 0 then
    -- out of queue-wide tokens: the wake-up tokens would only spin idle fetchers
    redis.call('DEL', KEYS[3])
  end
end
local groups = nil
if lim and #claimed < room then
  groups = F.group_open({Q = Q, lim = lim, now = now, lease_ms = lease_ms, leases = KEYS[2],
    stats = KEYS[4], scan = want + 200, read = read_job, lease = lease})
end
local function count() return #claimed end
if groups then
  F.claim(groups, #claimed + F.share(groups, room - #claimed, KEYS[1]), count)
end

-- popped ids looked at per call: held-back ones do not fill the claim, so
-- the scan goes on past them, within this bound
local scan = want + 200
local levels = {}
if #claimed < room then
  levels = redis.call('ZRANGE', KEYS[1], 0, -1)
end
for _, level in ipairs(levels) do
  local wait_key = Q .. 'wait:' .. level
  local usable = not check_types({wait_key, 'list'})
  while usable and #claimed < room and scan > 0 do
    local ids = redis.call('LPOP', wait_key, math.min(room - #claimed, scan))
    if not ids then
      break
    end
    scan = scan - #ids
    for _, id in ipairs(ids) do
      local jk, rec = read_job(id)
      if rec[1] == 'queued' then
        if not lim or not rec[2] or F.admit(lim, id, rec[2]) then
          lease(id, jk, rec)
        end
      elseif not rec[1] then
        -- an id with no record: nothing to run, nothing to keep
        redis.call('HINCRBY', KEYS[4], 'missing_record', 1)
      end
      -- any other status: the job ended (cancelled while it waited) or is held
      -- elsewhere; its id here is a leftover, dropped
    end
  end
  if usable and redis.call('LLEN', wait_key) == 0 then
    redis.call('ZREM', KEYS[1], level)
  end
  if #claimed >= room or scan <= 0 then
    break
  end
end
if groups and #claimed < room then
  F.claim(groups, room, count)
end
if #claimed > 0 then
  redis.call('SET', KEYS[6], table.concat(claimed, ' '), 'PX', lease_ms)
end
if redis.call('EXISTS', KEYS[1]) == 0 and not (lim and redis.call('EXISTS', Q .. 'gring') == 1) then
  -- nothing waits: any wake-up token left is stale
  redis.call('DEL', KEYS[3])
end
next_due()
if lim then
  local parked_us = groups and F.next_us(groups)
  if parked_us then
    F.note_next(lim, math.max(parked_us, lim.now))
  end
  local held_ms = F.close(lim)
  if held_ms >= 0 and (out[1] < 0 or held_ms < out[1]) then
    out[1] = held_ms
  end
end
return out
