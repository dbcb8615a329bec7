-- record_fields: read what a job record holds without ever raising. A record
-- key may hold another type (an operator or a bug wrote it) and its fields any
-- text; a script that raised on one of them half-way through a batch would
-- leave the jobs before it written and the rest not (Redis does not roll a
-- script back). These answer nil or a default instead.

-- the largest integer a field may hold (exact as a Lua number)
local FIELD_MAX = 9007199254740991
-- the longest time to live a record field may ask for (ms, ~300 years)
local FIELD_TTL_MAX = 10000000000000

-- a field's integer in [lo, hi], else nil (for 'x', 'nan', 'inf', '1e400', '2.5')
-- (n % 1, not math.floor: an operator instead of a C call, for every job)
local function field_int(value, lo, hi)
  local n = tonumber(value)
  if n and n >= lo and n <= hi and n % 1 == 0 then
    return n
  end
  return nil
end

-- a record's own time to live (ms) if it holds a usable one, else fallback
local function field_ttl(value, fallback)
  return field_int(value, 1, FIELD_TTL_MAX) or fallback
end

-- HINCRBY of a record's counter field; a field that holds no integer starts again at by
local function bump(jk, field, by)
  local n = redis.pcall('HINCRBY', jk, field, by)
  if type(n) == 'table' then
    redis.call('HSET', jk, field, by)
    return by
  end
  return n
end
