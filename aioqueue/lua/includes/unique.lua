-- unique: uniqueness, debounce and throttle for enqueue, by a caller's key.
-- The key <q>uniq:<key> (string, PX ttl) holds the id of the job that owns it.
-- It is released lazily: once its job has ended (a final status, or no
-- record) the key is free, so settle, reap and cancel need not know it.
--   unique    a job with the key is waiting, scheduled or running: return
--             its id, write nothing
--   debounce  the same, but a job that has not started yet takes the new
--             arguments, and a scheduled one is pushed back to now + delay
--   throttle  any enqueue within the key's ttl (the window) after the one
--             that took it is dropped, whatever became of that job
-- @include checks.lua
-- (comparisons, not constant tables: a table would be built on every call)
local function unique_ended(status)
  return status == 'succeeded' or status == 'failed' or status == 'cancelled'
end

-- the caller's unique arguments, checked; nil when the enqueue has none
local function unique_args(key, mode, ttl)
  if not key then
    return nil
  end
  if mode ~= 'unique' and mode ~= 'debounce' and mode ~= 'throttle' then
    refuse('unknown unique mode', mode or 'nothing')
  end
  return {key = key, mode = mode, ttl = need_int(ttl, 'unique ttl', 1)}
end

-- the id and status of the job holding the key (nil when the key is free)
local function unique_holder(uq, prefix)
  local id = redis.call('GET', uq.key)
  if not id then
    return nil
  end
  -- pcall: a holder key of another type (written by something else) is no
  -- job of ours: the key is free, instead of refusing every enqueue with it
  local status = redis.pcall('HGET', prefix .. 'job:' .. id, 'st')
  if type(status) == 'table' then
    status = nil
  end
  if uq.mode ~= 'throttle' and (not status or unique_ended(status)) then
    return nil
  end
  return id, status
end

-- the decision for an existing holder: {code, id}, or nil to create a new job
-- (debounce of a job that is already running). codes: 5 unique, 6 debounced,
-- 7 throttled (script_codes.EnqueueCode)
local function unique_decide(uq, prefix, delayed_key, now, args, delay)
  local id, status = unique_holder(uq, prefix)
  if not id then
    return nil
  end
  if uq.mode == 'throttle' then
    return {7, id}
  end
  if uq.mode == 'unique' then
    return {5, id}
  end
  if status ~= 'queued' and status ~= 'scheduled' then
    return nil
  end
  local jk = prefix .. 'job:' .. id
  redis.call('HSET', jk, 'a', args)
  if status == 'scheduled' and delay > 0 then
    redis.call('HSET', jk, 'due', now + delay)
    redis.call('ZADD', delayed_key, now + delay, id)
  end
  redis.call('PEXPIRE', uq.key, uq.ttl)
  return {6, id}
end

-- the new job takes the key
local function unique_take(uq, id)
  redis.call('SET', uq.key, id, 'PX', uq.ttl)
end
