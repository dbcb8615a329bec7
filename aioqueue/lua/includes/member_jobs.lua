-- member_jobs: check the member jobs a workflow script was given (from
-- ARGV[start], 5 entries each: id, task, arguments JSON, priority,
-- overrides) before anything is written, and build each one's record fields
-- (its task's overrides, then its workflow link: 'wf' id, 'wi' index).
-- @include checks.lua
-- @include overrides.lua
-- @include check_types.lua
local function member_jobs(start, count, wfid, first_index)
  local fields = {}
  for i = 0, count - 1 do
    local at = start + 5 * i
    need_text(ARGV[at], 'job id')
    need_text(ARGV[at + 1], 'task name')
    need_text(ARGV[at + 2], 'arguments')
    need_int(ARGV[at + 3], 'priority')
    local f = overrides(ARGV[at + 4])
    f[#f + 1] = 'wf'
    f[#f + 1] = wfid
    f[#f + 1] = 'wi'
    f[#f + 1] = first_index + i
    fields[i] = f
  end
  return fields
end

-- before the first write: the member records (a hash or none) and the wait
-- lists of their priorities must have their types, or a member would be
-- skipped and the workflow never end. Returns an error reply or nil.
-- lists: more keys that must be lists (the workflow's members and steps).
local function member_keys_wrong(prefix, start, count, lists)
  local pairs_list, seen = {}, {}
  for _, key in ipairs(lists) do
    pairs_list[#pairs_list + 1] = key
    pairs_list[#pairs_list + 1] = 'list'
  end
  for i = 0, count - 1 do
    local at = start + 5 * i
    pairs_list[#pairs_list + 1] = prefix .. 'job:' .. ARGV[at]
    pairs_list[#pairs_list + 1] = 'hash'
    if not seen[ARGV[at + 3]] then
      seen[ARGV[at + 3]] = true
      pairs_list[#pairs_list + 1] = prefix .. 'wait:' .. ARGV[at + 3]
      pairs_list[#pairs_list + 1] = 'list'
    end
  end
  return check_types(pairs_list)
end
