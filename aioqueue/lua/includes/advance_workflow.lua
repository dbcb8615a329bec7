-- advance_workflow: move a workflow on when one of its member jobs ends.
-- Called inside the script that ends the member (settle, reap, cancel), so the workflow advances atomically with the member's end:
-- a crash between the two is impossible, and a member re-delivered after a
-- lost lease cannot count twice (its fenced settle is refused, and group
-- results are written with HSETNX).
--
-- Workflow keys (all in the queue's slot): wf:<id> hash (kind, st, n, left,
-- coe, cb, r, e), wfr:<id> hash (member index -> result JSON), wfc:<id> list
-- (remaining chain steps), wfm:<id> list (member job ids, for cancel).
-- A step or callback spec is 'id \31 task \31 extra args JSON (no brackets)
-- \31 kwargs JSON \31 priority \31 overrides' (overrides: name \30 value
-- \30 ..., see overrides.lua; both may be missing in specs written before);
-- the previous result (or the group's result list) becomes the first
-- positional argument.
-- @include push_job.lua
-- @include overrides.lua
-- @include notify.lua
-- @include record_fields.lua
local function split_spec(spec)
  local parts = {}
  for part in string.gmatch(spec .. '\31', '([^\31]*)\31') do
    parts[#parts + 1] = part
  end
  return parts
end

-- the record fields of a spawned member: its workflow link, then its task's
-- overrides (checked when the spec was stored; a damaged one is dropped)
local function member_fields(wfid, index, overrides)
  local fields = {'wf', wfid, 'wi', index}
  local pairs_list = {}
  for part in string.gmatch((overrides or '') .. '\30', '([^\30]*)\30') do
    pairs_list[#pairs_list + 1] = part
  end
  if #pairs_list % 2 == 0 then
    for i = 1, #pairs_list, 2 do
      if is_override(pairs_list[i]) and tonumber(pairs_list[i + 1]) then
        fields[#fields + 1] = pairs_list[i]
        fields[#fields + 1] = pairs_list[i + 1]
      end
    end
  end
  return fields
end

local function finish_workflow(qk, wfid, status, result, err, ttl)
  local wfk = qk.prefix .. 'wf:' .. wfid
  redis.call('HSET', wfk, 'st', status)
  if result then
    redis.call('HSET', wfk, 'r', result)
  end
  if err then
    redis.call('HSET', wfk, 'e', err)
  end
  for _, part in ipairs({'wf:', 'wfr:', 'wfc:', 'wfm:'}) do
    redis.call('PEXPIRE', qk.prefix .. part .. wfid, ttl)
  end
  notify(qk.prefix .. 'done:' .. wfid, status)
end

-- a workflow its keys cannot carry on (a key of another type, a count or a
-- step that is not one): it ends failed, saying why; the stats count
-- 'malformed_workflow'. Its record wfk was read as a hash.
local function workflow_damaged(qk, wfid, what, ttl)
  if qk.stats then
    redis.call('HINCRBY', qk.stats, 'malformed_workflow', 1)
  end
  finish_workflow(qk, wfid, 'failed', nil, cjson.encode({type = 'MalformedWorkflow',
    message = what, traceback = ''}), ttl)
end

local function spawn(qk, now, wfid, spec, first_arg, index, ttl)
  local parts = split_spec(type(spec) == 'string' and spec or '')
  local id, task, rest, kwargs = parts[1], parts[2], parts[3], parts[4]
  if id == '' or not task or task == '' or not rest or not kwargs then
    workflow_damaged(qk, wfid, 'a step of the workflow is not a step spec', ttl)
    return
  end
  local n = field_int(parts[5], -FIELD_MAX, FIELD_MAX)
  local p = n and string.format('%d', n) or '0'
  if rest ~= '' then
    first_arg = first_arg .. ',' .. rest
  end
  local created = push_job(qk, now, id, task, '[[' .. first_arg .. '],' .. kwargs .. ']', p,
    member_fields(wfid, index, parts[6]))
  if created == nil then
    workflow_damaged(qk, wfid, 'the wait list of its next job holds another type of value', ttl)
  elseif created then
    -- the members' list serves cancel; one of another type only loses that
    redis.pcall('RPUSH', qk.prefix .. 'wfm:' .. wfid, id)
  end
end

-- outcome: 'ok' (payload = result JSON), 'dead' (payload = error JSON) or
-- 'cancel' (payload = error JSON). A workflow record of another type is not
-- ours: the member ends, the stats count 'malformed_workflow'.
local function advance_workflow(qk, now, jk, outcome, payload, ttl)
  local link = redis.call('HMGET', jk, 'wf', 'wi')
  if not link[1] then
    return
  end
  local wfid, index = link[1], link[2]
  local wfk = qk.prefix .. 'wf:' .. wfid
  local wf = redis.pcall('HMGET', wfk, 'st', 'kind', 'n', 'coe')
  if wf.err then
    if qk.stats then
      redis.call('HINCRBY', qk.stats, 'malformed_workflow', 1)
    end
    return
  end
  if wf[1] ~= 'running' then
    return
  end
  local kind = wf[2]
  local member_of_group = kind ~= 'chain' and index ~= 'cb'
  if outcome ~= 'ok' and not (member_of_group and wf[4] == '1') then
    local status = 'failed'
    if outcome == 'cancel' then
      status = 'cancelled'
    end
    finish_workflow(qk, wfid, status, nil, payload, ttl)
    return
  end
  if not member_of_group then
    if index ~= 'cb' then
      local step = redis.pcall('LPOP', qk.prefix .. 'wfc:' .. wfid)
      local at = field_int(index, 0, FIELD_MAX)
      if type(step) == 'table' or (step and not at) then
        workflow_damaged(qk, wfid, 'its chain steps or the step index are damaged', ttl)
        return
      end
      if step then
        spawn(qk, now, wfid, step, payload, at + 1, ttl)
        return
      end
    end
    finish_workflow(qk, wfid, 'succeeded', payload, nil, ttl)
    return
  end
  local value = payload
  if outcome ~= 'ok' then
    value = '{"error":' .. payload .. '}'
  end
  local size = field_int(wf[3], 1, 10000000)
  local stored = size and index and redis.pcall('HSETNX', qk.prefix .. 'wfr:' .. wfid, index,
    value)
  if not stored or type(stored) == 'table' then
    workflow_damaged(qk, wfid, 'its size, results or the member index are damaged', ttl)
    return
  end
  if stored == 0 then
    return
  end
  local left = redis.pcall('HINCRBY', wfk, 'left', -1)
  if type(left) == 'table' then
    workflow_damaged(qk, wfid, 'its count of members left is not a number', ttl)
    return
  end
  if left > 0 then
    return
  end
  local parts = {}
  for i = 0, size - 1 do
    parts[#parts + 1] = redis.call('HGET', qk.prefix .. 'wfr:' .. wfid, tostring(i)) or 'null'
  end
  local results = '[' .. table.concat(parts, ',') .. ']'
  if kind == 'chord' then
    spawn(qk, now, wfid, redis.call('HGET', wfk, 'cb'), results, 'cb', ttl)
  else
    finish_workflow(qk, wfid, 'succeeded', results, nil, ttl)
  end
end
