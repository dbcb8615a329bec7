-- add_error: record an error entry (JSON text, never decoded here) as the
-- job's last error ('e') and append it to its history: one field per entry
-- ('e:<n>', n counted in 'ne'), the oldest dropped past HISTORY, so a retry
-- costs the same whatever the history holds. A count that is not an integer
-- (written by something else) starts again.
-- @include record_fields.lua
local HISTORY = 20
local function add_error(jk, entry)
  local n = bump(jk, 'ne', 1)
  redis.call('HSET', jk, 'e', entry, 'e:' .. n, entry)
  if n > HISTORY then
    redis.call('HDEL', jk, 'e:' .. (n - HISTORY))
  end
end
