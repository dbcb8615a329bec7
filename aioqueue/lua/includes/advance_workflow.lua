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

local function spawn(qk, now, wfid, spec, first_arg, index)
  local parts = split_spec(spec)
  local id, task, rest, kwargs = parts[1], parts[2], parts[3], parts[4]
  local p = parts[5]
  if not tonumber(p) then
    p = '0'
  end
  if rest ~= '' then
    first_arg = first_arg .. ',' .. rest
  end
  if push_job(qk, now, id, task, '[[' .. first_arg .. '],' .. kwargs .. ']', p,
      member_fields(wfid, index, parts[6])) then
    redis.call('RPUSH', qk.prefix .. 'wfm:' .. wfid, id)
  end
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

-- outcome: 'ok' (payload = result JSON), 'dead' (payload = error JSON) or
-- 'cancel' (payload = error JSON)
local function advance_workflow(qk, now, jk, outcome, payload, ttl)
  local link = redis.call('HMGET', jk, 'wf', 'wi')
  if not link[1] then
    return
  end
  local wfid, index = link[1], link[2]
  local wfk = qk.prefix .. 'wf:' .. wfid
  local wf = redis.call('HMGET', wfk, 'st', 'kind', 'n', 'coe')
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
      local step = redis.call('LPOP', qk.prefix .. 'wfc:' .. wfid)
      if step then
        spawn(qk, now, wfid, step, payload, tonumber(index) + 1)
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
  if redis.call('HSETNX', qk.prefix .. 'wfr:' .. wfid, index, value) == 0 then
    return
  end
  if redis.call('HINCRBY', wfk, 'left', -1) > 0 then
    return
  end
  local parts = {}
  for i = 0, tonumber(wf[3]) - 1 do
    parts[#parts + 1] = redis.call('HGET', qk.prefix .. 'wfr:' .. wfid, tostring(i)) or 'null'
  end
  local results = '[' .. table.concat(parts, ',') .. ']'
  if kind == 'chord' then
    spawn(qk, now, wfid, redis.call('HGET', wfk, 'cb'), results, 'cb')
  else
    finish_workflow(qk, wfid, 'succeeded', results, nil, ttl)
  end
end
