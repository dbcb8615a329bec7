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
-- ARGV[1] queue key prefix ('<prefix>:{<queue>}:')
-- ARGV[2] max jobs to claim (0: only promote due jobs and report the next due time)
-- ARGV[3] lease duration (ms, >= 1)
-- ARGV[4] worker id
-- ARGV[5] most scheduled jobs to promote in this call (>= 0)
-- Derived: <q>job:<id> and <q>wait:<p> for ids and priorities read here;
--   channel <q>done:<id>
-- Returns: flat array: ms until the next scheduled job is due (-1 if none),
--   then 9 entries per job:
--   id, token, task, args, attempt, max_tries, timeout_ms, enqueued_ms, result_ttl_ms
-- @include check_types.lua
-- @include checks.lua
-- @include now_ms.lua
-- @include notify.lua
local Q = need_prefix(ARGV[1], KEYS[1], 'prios')
local want = need_int(ARGV[2], 'max jobs', 0, 100000)
local lease_ms = need_int(ARGV[3], 'lease', 1)
local worker = need_text(ARGV[4], 'worker id')
local promote = need_int(ARGV[5], 'promote limit', 0, 1000000)
local wrong = check_types({KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'list', KEYS[4], 'hash',
  KEYS[5], 'zset', KEYS[6], 'string', KEYS[7], 'string'})
if wrong then
  return wrong
end
local now = now_ms()
local deadline = now + lease_ms
local out = {-1}

local function emit(id, token, rec)
  out[#out + 1] = id
  out[#out + 1] = token
  out[#out + 1] = rec[2]
  out[#out + 1] = rec[3]
  out[#out + 1] = rec[4] or '1'
  out[#out + 1] = rec[5] or ''
  out[#out + 1] = rec[6] or ''
  out[#out + 1] = rec[7] or ''
  out[#out + 1] = rec[8] or ''
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
    local rec = redis.call('HMGET', jk, 'st', 't', 'a', 'att', 'mt', 'to', 'et', 'rt', 'w', 'tk')
    if rec[1] == 'active' and rec[9] == worker and rec[10] and redis.call('ZSCORE', KEYS[2], id) then
      emit(id, rec[10], rec)
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
    local rec = redis.call('HMGET', jk, 'st', 'p')
    local p = rec[2] or '0'
    if rec[1] ~= 'scheduled' or not tonumber(p) then
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
local levels = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, level in ipairs(levels) do
  local wait_key = Q .. 'wait:' .. level
  local ids = false
  if not check_types({wait_key, 'list'}) then
    ids = redis.call('LPOP', wait_key, want - #claimed)
  end
  if ids then
    for _, id in ipairs(ids) do
      local jk = Q .. 'job:' .. id
      local rec = {}
      if check_types({jk, 'hash'}) then
        redis.call('HINCRBY', KEYS[4], 'malformed_record', 1)
        rec = {'not ours'}
      else
        rec = redis.call('HMGET', jk, 'st', 't', 'a', 'att', 'mt', 'to', 'et', 'rt', 'tk')
      end
      if rec[1] == 'queued' then
        local token = string.format('%d', math.max((tonumber(rec[9]) or 0) + 1, now))
        redis.call('HINCRBY', jk, 'dlv', 1)
        redis.call('HSET', jk, 'st', 'active', 'w', worker, 'ts', now, 'tk', token)
        redis.call('ZADD', KEYS[2], deadline, id)
        claimed[#claimed + 1] = id
        notify(Q .. 'done:' .. id, 'active')
        emit(id, token, rec)
      elseif not rec[1] then
        -- an id with no record: nothing to run, nothing to keep
        redis.call('HINCRBY', KEYS[4], 'missing_record', 1)
      end
      -- any other status: the job ended (cancelled while it waited) or is held
      -- elsewhere; its id here is a leftover, dropped
    end
  end
  if not check_types({wait_key, 'list'}) and redis.call('LLEN', wait_key) == 0 then
    redis.call('ZREM', KEYS[1], level)
  end
  if #claimed >= want then
    break
  end
end
if #claimed > 0 then
  redis.call('SET', KEYS[6], table.concat(claimed, ' '), 'PX', lease_ms)
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- nothing waits: any wake-up token left is stale
  redis.call('DEL', KEYS[3])
end
next_due()
return out
