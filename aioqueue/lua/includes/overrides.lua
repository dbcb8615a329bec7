-- overrides: the per-job overrides of a new record from their wire form
-- (alternating name/value joined by \31), checked: only the known names
-- (record.py OVERRIDE_FIELDS) with integer values.
-- @include checks.lua
local OVERRIDE_NAMES = {mt = true, md = true, to = true, rt = true}
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
    if not OVERRIDE_NAMES[fields[i]] then
      refuse('unknown override field', fields[i])
    end
    need_int(fields[i + 1], 'override ' .. fields[i], 0)
  end
  return fields
end
