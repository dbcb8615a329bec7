-- settle: record the outcome of a batch of jobs, each fenced by its lease token.
-- Only the holder of the current lease may settle a job. Re-sending a settle
-- that was already applied (lost reply) is recognised and changes nothing.
--
-- KEYS[1] leases           zset   <q>leases
-- KEYS[2] delayed          zset   <q>delayed
-- KEYS[3] dead letters     zset   <q>dead     member = id, score = time dead (ms)
-- KEYS[4] priority levels  zset   <q>prios
-- KEYS[5] wake-up list     list   <q>wake
-- KEYS[6] stats            hash   <q>stats
-- ARGV[1] queue key prefix
-- ARGV[2] default result TTL (ms) for a job record without its own
-- ARGV[3] dead-letter TTL (ms)
-- ARGV[4..] groups of 5: id, token, kind, payload, number
--   kind 'ok'      payload = result JSON           number = result TTL ms (0 = default)
--   kind 'retry'   payload = error JSON            number = delay ms
--   kind 'dead'    payload = error JSON            number = unused
--   kind 'requeue' payload = ''                    number = unused (back to the front, now)
--   kind 'cancel'  payload = reason (text)         number = unused
-- Every retry and dead outcome appends its error to the record's history ('eh').
-- A member of a workflow advances its workflow in the same step (advance_workflow).
-- Each applied outcome counts in the queue's per-minute stats (minute_stats).
-- Returns: one code per job: 1 applied, 0 already applied by this token, -1 stale token
-- @include push_job.lua
-- @include make_runnable.lua
-- @include advance_workflow.lua
-- @include minute_stats.lua
local Q = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local default_ttl = tonumber(ARGV[2])
local dead_ttl = tonumber(ARGV[3])
local codes = {}
-- the per-minute counter of each outcome
local COUNTED = {ok = 'succeeded', dead = 'failed', retry = 'retried', cancel = 'cancelled'}

local function add_error(jk, payload)
  local history = cjson.decode(redis.call('HGET', jk, 'eh') or '[]')
  history[#history + 1] = cjson.decode(payload)
  redis.call('HSET', jk, 'e', payload, 'eh', cjson.encode(history))
end

for i = 4, #ARGV, 5 do
  local id, token, kind, payload, number = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local jk = Q .. 'job:' .. id
  local rec = redis.call('HMGET', jk, 'dlv', 'lt', 'rt', 'ts', 'et', 'att')
  if rec[1] ~= token or not redis.call('ZSCORE', KEYS[1], id) then
    if rec[2] == token .. kind then
      codes[#codes + 1] = 0
    else
      redis.call('HINCRBY', KEYS[6], 'stale_settle', 1)
      codes[#codes + 1] = -1
    end
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HSET', jk, 'lt', token .. kind)
    local started = tonumber(rec[4])
    if started then
      minute_add('run_n', 1)
      minute_add('run_ms', now - started)
      minute_max('run_max', now - started)
      if not rec[6] or rec[6] == '1' then
        local waited = math.max(0, started - (tonumber(rec[5]) or started))
        minute_add('wait_n', 1)
        minute_add('wait_ms', waited)
        minute_max('wait_max', waited)
      end
    end
    local counted = COUNTED[kind]
    if counted then
      minute_add(counted, 1)
    end
    if kind == 'ok' then
      redis.call('HSET', jk, 'st', 'succeeded', 'r', payload, 'tf', now)
      local ttl = number
      if ttl <= 0 then ttl = tonumber(rec[3]) or default_ttl end
      redis.call('PEXPIRE', jk, ttl)
      redis.call('HINCRBY', KEYS[6], 'succeeded', 1)
      redis.call('PUBLISH', Q .. 'done:' .. id, 'succeeded')
      advance_workflow(Q, now, jk, 'ok', payload, default_ttl)
    elseif kind == 'retry' then
      local attempt = tonumber(redis.call('HGET', jk, 'att') or '1') + 1
      add_error(jk, payload)
      redis.call('HSET', jk, 'att', attempt)
      if number > 0 then
        redis.call('HSET', jk, 'st', 'scheduled', 'due', now + number)
        redis.call('ZADD', KEYS[2], now + number, id)
        if redis.call('LLEN', KEYS[5]) < 8 then
          redis.call('RPUSH', KEYS[5], '1')
        end
      else
        make_runnable(Q, id, jk, false)
      end
      redis.call('HINCRBY', KEYS[6], 'retried', 1)
      redis.call('PUBLISH', Q .. 'done:' .. id, 'retrying')
    elseif kind == 'dead' then
      add_error(jk, payload)
      redis.call('HSET', jk, 'st', 'failed', 'tf', now)
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('PEXPIRE', jk, dead_ttl)
      redis.call('HINCRBY', KEYS[6], 'failed', 1)
      redis.call('PUBLISH', Q .. 'done:' .. id, 'failed')
      advance_workflow(Q, now, jk, 'dead', payload, default_ttl)
    elseif kind == 'requeue' then
      make_runnable(Q, id, jk, true)
      redis.call('HINCRBY', KEYS[6], 'requeued', 1)
    elseif kind == 'cancel' then
      local err = cjson.encode({type = 'Cancelled', message = payload, traceback = ''})
      redis.call('HSET', jk, 'st', 'cancelled', 'tf', now, 'e', err)
      advance_workflow(Q, now, jk, 'cancel', err, default_ttl)
      redis.call('PEXPIRE', jk, tonumber(rec[3]) or default_ttl)
      redis.call('HINCRBY', KEYS[6], 'cancelled', 1)
      redis.call('PUBLISH', Q .. 'done:' .. id, 'cancelled')
    end
    codes[#codes + 1] = 1
  end
end
minute_flush(Q, now)
return codes
