-- checks: validate arguments before the first write. Redis does not roll a
-- script back, so a script that failed half-way (a bad number on the third
-- job of a batch, say) would leave a half-written state; these raise an error
-- reply instead, while nothing has been written yet.
local function refuse(what, value)
  -- shown as printable ASCII: an error reply must stay readable text
  local shown = string.gsub(string.sub(tostring(value), 1, 40), '[^%w%p ]', '?')
  error({err = 'ERR aioqueue: ' .. what .. ' "' .. shown .. '"'})
end

-- an integer in [lo, hi] (nil bound = open), from ARGV text in plain
-- decimal form (what the Python side sends: no '05', '1e3', '-0' or ' 5',
-- which would name a different key than the number they stand for) and
-- exact as a Lua number (|n| < 2^53). Checked with one anchored pattern, not
-- by formatting the number back: that snprintf cost more than the rest of
-- the check, and this runs for every job of a batch.
local function need_int(value, what, lo, hi)
  if value == '0' and (not lo or lo <= 0) and (not hi or hi >= 0) then
    return 0  -- the usual value of most numbers sent (strings compare as pointers)
  end
  if type(value) ~= 'string' or #value > 16
      or (value ~= '0' and not string.find(value, '^%-?[1-9]%d*$')) then
    refuse(what .. ' must be an integer, got', value)
  end
  local n = tonumber(value)
  if n > 9007199254740991 or n < -9007199254740991 or (lo and n < lo) or (hi and n > hi) then
    refuse(what .. ' must be an integer, got', value)
  end
  return n
end

local function need_text(value, what)
  if value == nil or value == '' then
    refuse(what .. ' must not be empty, got', value or 'nothing')
  end
  return value
end

-- the key the caller passed must be the one this id names (e.g. KEYS[1] =
-- '<q>job:' .. id): a mismatch would write a record under one id and queue
-- another. One concatenation and one plain find at a fixed position: each
-- call of a string library function costs ~700 instructions in Redis' Lua
-- (callgrind), a concatenation about as much.
local function need_key_for(key, kind, id)
  local tail = ':' .. kind .. ':' .. id
  local at = #key - #tail + 1  -- where the tail must start
  if at < 2 or string.find(key, tail, at, true) ~= at then
    refuse('the key does not name ' .. kind .. ' id', id)
  end
end

-- the same for a batch with a checked queue prefix: one concatenation and
-- a compare of interned strings (cheaper per job than need_key_for's finds)
local function need_job_key(prefix, key, id)
  if key ~= prefix .. 'job:' .. id then
    refuse('the key does not name job id', id)
  end
end

-- the queue prefix (for keys derived inside the script) must be the one the
-- fixed keys were named with: checked on one of them, e.g. <q>prios
local function need_prefix(prefix, key, name)
  if prefix == '' or prefix .. name ~= key then
    refuse('the queue prefix does not match the key ' .. name .. ':', prefix)
  end
  return prefix
end
