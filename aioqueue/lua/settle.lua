-- settle: record the outcome of a batch of jobs, each fenced by its lease token.
-- Only the holder of the current lease may settle a job. Re-sending a settle
-- that was already applied (lost reply) is recognised and changes nothing.
-- Every argument is checked, and every job read, before the first write: a
-- bad argument, or a queue-wide key the batch writes holding another type
-- (WRONGTYPE reply), refuses the whole batch and changes nothing (the leases
-- stay, the reaper sees them).
--
-- KEYS[1] leases           zset   <q>leases
-- KEYS[2] delayed          zset   <q>delayed
-- KEYS[3] dead letters     zset   <q>dead     member = id, score = time dead (ms)
-- KEYS[4] priority levels  zset   <q>prios
-- KEYS[5] wake-up list     list   <q>wake
-- KEYS[6] stats            hash   <q>stats
-- KEYS[7] slot guard       none   <q>guard    never exists (includes/guard.lua)
-- KEYS[8..] job records    hash   <q>job:<id>, one per ARGV group, in order
-- ARGV[1] queue key prefix
-- ARGV[2] default result TTL (ms) for a job record without its own
-- ARGV[3] dead-letter TTL (ms)
-- ARGV[4..] groups of 5: id, token, kind, payload, number
--   kind 'ok'      payload = result JSON           number = result TTL ms (0 = default)
--   kind 'retry'   payload = error entry JSON      number = delay ms
--   kind 'dead'    payload = error entry JSON      number = unused
--   kind 'requeue' payload = ''                    number = unused (back to the front, now)
--   kind 'cancel'  payload = reason (text)         number = unused
-- A retry or requeue of a job whose cancellation was asked ('cx') ends it
-- cancelled instead: a pending cancel is never lost to a hand-back.
-- Every retry and dead outcome appends its error to the record's history (add_error).
-- A job of a concurrency group ('g') frees its slot (groups.lua).
-- A member of a workflow advances its workflow in the same step (advance_workflow).
-- Each applied outcome counts in the queue's per-minute stats (minute_stats).
-- Derived: <q>wait:<p> for the record's priority, group keys (groups.lua), workflow keys, channel <q>done:<id>,
--   the per-minute stats <q>m:<minute> of server time
-- Returns: one code per job:
-- Code 1 APPLIED: the outcome was recorded
-- Code 0 ALREADY_APPLIED: this token's outcome was recorded before (a resent settle)
-- Code -1 STALE: the token no longer holds the lease: nothing written
-- Code -2 MALFORMED: the job's record key holds another type of value (written
--   by something else): the job cannot end or run again; its lease is dropped
--   and the stats count 'malformed_record' (once)
-- A record with fields that are not what they should be (text where a number
-- belongs) never stops the batch: such a field is ignored or starts again
-- (record_fields.lua); a job whose wait list holds another type ends
-- dead-lettered instead of waiting (end_job.lua runnable_or_dead).
-- @include check_types.lua
-- @include checks.lua
-- @include guard.lua
-- @include now_ms.lua
-- @include wake.lua
-- @include minute_stats.lua
-- @include notify.lua
-- @include record_fields.lua

-- The helpers of retries, dead letters, cancellations, groups and workflows
-- are made only for a batch that has one: Redis runs the whole script per
-- call, and each function is a new closure each time (~440 instructions).
local function outcome_helpers()
  -- @include make_runnable.lua
  -- @include groups.lua
  -- @include add_error.lua
  -- @include advance_workflow.lua
  -- @include end_job.lua
  return {group_release = group_release, advance_workflow = advance_workflow,
    add_error = add_error, runnable_or_dead = runnable_or_dead, end_dead = end_dead,
    end_cancelled = end_cancelled}
end
local H = nil
local qk = {prefix = need_prefix(ARGV[1], KEYS[4], 'prios'), prios = KEYS[4], wake = KEYS[5],
  stats = KEYS[6], dead = KEYS[3]}
need_guard(qk.prefix, KEYS[7])
local default_ttl = need_int(ARGV[2], 'default result TTL', 1)
local dead_ttl = need_int(ARGV[3], 'dead-letter TTL', 1)
local groups = (#ARGV - 3) / 5
if groups ~= math.floor(groups) or groups ~= #KEYS - 7 then
  refuse('want one job record key per group of 5 arguments, got keys/args', #KEYS .. '/' .. #ARGV)
end
local numbers = {}
for g = 1, groups do
  local i = 4 + 5 * (g - 1)
  need_text(ARGV[i], 'job id')
  need_job_key(qk.prefix, KEYS[7 + g], ARGV[i])
  need_text(ARGV[i + 1], 'token')
  local kind = ARGV[i + 2]
  if kind ~= 'ok' and kind ~= 'retry' and kind ~= 'dead' and kind ~= 'requeue'
      and kind ~= 'cancel' then
    refuse('unknown settle kind', ARGV[i + 2])
  end
  numbers[g] = need_int(ARGV[i + 4], 'settle number', 0)
end
local now = now_ms()
-- 'now' as text once: a number argument to redis.call is formatted (snprintf)
-- on every call, and this one goes into every job's record
local now_text = string.format('%d', now)
local codes = {}
-- the per-minute counter of each outcome
-- the per-minute counter of each outcome (requeue: none)
local function counted(kind)
  if kind == 'ok' then return 'succeeded' end
  if kind == 'dead' then return 'failed' end
  if kind == 'retry' then return 'retried' end
  if kind == 'cancel' then return 'cancelled' end
  return nil
end

local function count_minute(kind, rec)
  local started = field_int(rec[4], 0, FIELD_MAX)
  if started then
    local waited = nil
    if not rec[6] or rec[6] == '1' then
      waited = started - (field_int(rec[5], 0, FIELD_MAX) or started)
      if waited < 0 then waited = 0 end
    end
    minute_run(now - started, waited)
  end
  local name = counted(kind)
  if name then
    minute_add(name, 1)
  end
end

local succeeded = 0
local function succeed(id, jk, payload, ttl, ttl_text, own_ttl, in_workflow)
  redis.call('HSET', jk, 'st', 'succeeded', 'r', payload, 'tf', now_text)
  if ttl > 0 then
    redis.call('PEXPIRE', jk, ttl_text)
  else
    redis.call('PEXPIRE', jk, field_ttl(own_ttl, ARGV[2]))  -- ARGV[2]: checked, as text
  end
  succeeded = succeeded + 1  -- counted once per call, below
  notify(qk.prefix .. 'done:' .. id, 'succeeded')
  if in_workflow then
    H.advance_workflow(qk, now, jk, 'ok', payload, default_ttl)
  end
end

-- att: the attempt that failed (the record's field, read with the others)
local function retry(id, jk, payload, delay, att)
  local attempt = (field_int(att, 0, FIELD_MAX) or 1) + 1
  H.add_error(jk, payload)
  redis.call('HSET', jk, 'att', attempt)
  if delay > 0 then
    redis.call('HSET', jk, 'st', 'scheduled', 'due', now + delay)
    redis.call('ZADD', KEYS[2], now + delay, id)
    wake(KEYS[5])
  elseif not H.runnable_or_dead(qk, now, id, jk, false, dead_ttl, default_ttl) then
    return
  end
  redis.call('HINCRBY', KEYS[6], 'retried', 1)
  notify(qk.prefix .. 'done:' .. id, 'retrying')
end

-- Read every job before the first write (Redis does not roll a script back):
-- its record (pcall: a key of another type is MALFORMED, not an error), and
-- so which queue-wide keys the batch will write; those are checked here too,
-- so a key of another type refuses the whole batch instead of stopping it
-- after some jobs' writes. A batch of plain successes writes only the leases
-- and the stats: one TYPE per call, whatever the batch size.
local recs = {}
local writes_queue = false
for g = 1, groups do
  local i = 4 + 5 * (g - 1)
  local rec = redis.pcall('HMGET', KEYS[7 + g], 'tk', 'lt', 'rt', 'ts', 'et', 'att', 'cx', 'g',
    'wf')
  recs[g] = rec
  if not writes_queue and not rec.err and (ARGV[i + 2] ~= 'ok' or rec[9]) then
    writes_queue = true  -- retries, requeues, dead letters, workflow steps
  end
end
local wrong
if writes_queue then
  wrong = check_types({KEYS[1], 'zset', KEYS[6], 'hash', KEYS[2], 'zset', KEYS[3], 'zset',
    KEYS[4], 'zset', KEYS[5], 'list'})
else
  wrong = check_types({KEYS[1], 'zset', KEYS[6], 'hash'})
end
if wrong then
  return wrong
end

for g = 1, groups do
  local i = 4 + 5 * (g - 1)
  local id, token, kind, payload, number = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], numbers[g]
  local jk = KEYS[7 + g]
  local rec = recs[g]
  if rec.err then
    if redis.call('ZREM', KEYS[1], id) == 1 then
      redis.call('HINCRBY', KEYS[6], 'malformed_record', 1)
    end
    codes[#codes + 1] = -2
  elseif rec[1] ~= token or not redis.call('ZSCORE', KEYS[1], id) then
    -- (read again: the same job earlier in this batch may have just settled it)
    if rec[2] == token .. kind or redis.call('HGET', jk, 'lt') == token .. kind then
      codes[#codes + 1] = 0
    else
      redis.call('HINCRBY', KEYS[6], 'stale_settle', 1)
      codes[#codes + 1] = -1
    end
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HSET', jk, 'lt', token .. kind)
    if kind ~= 'ok' or rec[8] or rec[9] then
      H = H or outcome_helpers()  -- not a plain success
    end
    if rec[8] then
      H.group_release(qk.prefix, rec[8], id, qk.wake)
    end
    if rec[7] and (kind == 'retry' or kind == 'requeue') then
      -- its cancellation was asked while it ran: it must not run again
      kind, payload = 'cancel', rec[7]
    end
    count_minute(kind, rec)
    if kind == 'ok' then
      succeed(id, jk, payload, number, ARGV[i + 4], rec[3], rec[9])
    elseif kind == 'retry' then
      retry(id, jk, payload, number, rec[6])
    elseif kind == 'dead' then
      H.end_dead(qk, now, id, jk, payload, dead_ttl, default_ttl)
    elseif kind == 'requeue' then
      if H.runnable_or_dead(qk, now, id, jk, true, dead_ttl, default_ttl) then
        redis.call('HINCRBY', KEYS[6], 'requeued', 1)
      end
    else
      H.end_cancelled(qk, now, id, jk, payload, rec[3], default_ttl)
    end
    codes[#codes + 1] = 1
  end
end
if succeeded > 0 then
  -- pcall: after the writes, a count that is not an integer (written by
  -- something else) must not fail the call; the count is dropped
  redis.pcall('HINCRBY', KEYS[6], 'succeeded', succeeded)
end
minute_flush(qk.prefix, now)
return codes
