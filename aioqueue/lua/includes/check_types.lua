-- check_types: refuse to run when a queue key holds another type of value
-- (written by something else). Scripts call it before their first write:
-- Redis does not roll a script back, so failing half-way (WRONGTYPE on the
-- third command) would leave a half-written job behind.
-- pairs: {key1, 'list', key2, 'zset', ...}; returns an error reply or nil.
local function check_types(pairs)
  for i = 1, #pairs, 2 do
    local found = redis.call('TYPE', pairs[i])['ok']
    if found ~= 'none' and found ~= pairs[i + 1] then
      return redis.error_reply('WRONGTYPE aioqueue key ' .. pairs[i] .. ' holds a ' .. found ..
        ', expected a ' .. pairs[i + 1])
    end
  end
  return nil
end
