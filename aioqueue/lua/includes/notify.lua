-- notify: publish an event on one of the queue's channels (<q>done:<id>,
-- <q>cancel). Every script publishes through this one function, so the
-- loader can switch it to sharded pub/sub (SPUBLISH) for Redis Cluster in
-- one place; the channels carry the queue's hash tag, like its keys.
local function notify(channel, message)
  redis.call('PUBLISH', channel, message)
end
