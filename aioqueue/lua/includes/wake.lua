-- wake: push a token that wakes one idle fetcher. The list is capped at 8:
-- a token is a hint, not a job, and more would only cause empty claims.
local function wake(wake_key)
  if redis.call('LLEN', wake_key) < 8 then
    redis.call('RPUSH', wake_key, '1')
  end
end
