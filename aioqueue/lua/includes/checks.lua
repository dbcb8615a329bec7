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
-- decimal form (what the Python side sends: no '05', '1e3' or ' 5', which
-- would name a different key than the number they stand for)
local function need_int(value, what, lo, hi)
  local n = tonumber(value)
  if type(value) ~= 'string' or string.len(value) > 16 or n == nil or n ~= n
      or n == math.huge or n == -math.huge or n ~= math.floor(n)
      or string.format('%d', n) ~= value or (lo and n < lo) or (hi and n > hi) then
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
-- '<q>job:' .. id): a mismatch would write a record under one id and queue another
local function need_key_for(key, kind, id)
  local suffix = kind .. ':' .. id
  if string.sub(key, -string.len(suffix) - 1) ~= ':' .. suffix then
    refuse('the key does not name ' .. kind .. ' id', id)
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
