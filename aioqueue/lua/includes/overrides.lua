-- overrides: the per-job overrides of a new record from their wire form
-- (alternating name/value joined by \31), checked: only the known names
-- (record.py OVERRIDE_FIELDS) with integer values, and the producer's trace
-- context 'tc' (record.py Field.TRACE): 1..1024 printable ASCII characters.
-- @include checks.lua
-- (a comparison, not a constant table: a table would be built on every call)
local function is_override(name)
  return name == 'mt' or name == 'md' or name == 'to' or name == 'rt'
end
local TRACE_MAX = 1024
local function overrides(text)
  local fields = {}
  if text == '' then
    return fields
  end
  for part in string.gmatch(text .. '\31', '([^\31]*)\31') do
    fields[#fields + 1] = part
  end
  if #fields % 2 ~= 0 then
    refuse('overrides must be name/value pairs, got', text)
  end
  for i = 1, #fields, 2 do
    if fields[i] == 'tc' then
      local tc = fields[i + 1]
      if #tc == 0 or #tc > TRACE_MAX or string.find(tc, '[^\32-\126]') then
        refuse('trace context must be 1..1024 printable ASCII characters, got', tc)
      end
    elseif not is_override(fields[i]) then
      refuse('unknown override field', fields[i])
    else
      need_int(fields[i + 1], 'override ' .. fields[i], 0)
    end
  end
  return fields
end
