-- notify: publish an event on one of the queue's channels (<q>done:<id>,
-- <q>cancel). Every script publishes through this one function. On Redis
-- Cluster the loader (scripts.py, load_script with sharded=True) turns the
-- PUBLISH below into SPUBLISH (sharded pub/sub, Redis >= 7 / Valkey): the
-- event then stays in the shard owning the queue's slot instead of crossing
-- the cluster bus to every node. The channels carry the queue's hash tag,
-- like its keys, so SPUBLISH from the queue's own scripts is always local.
local function notify(channel, message)
  redis.call('PUBLISH', channel, message)
end
