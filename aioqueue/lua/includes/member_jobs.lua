-- member_jobs: check the member jobs a workflow script was given (from
-- ARGV[start], 5 entries each: id, task, arguments JSON, priority,
-- overrides) before anything is written, and build each one's record fields
-- (its task's overrides, then its workflow link: 'wf' id, 'wi' index).
-- @include checks.lua
-- @include overrides.lua
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
