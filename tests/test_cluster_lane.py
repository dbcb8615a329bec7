"""The cluster command lane against a real local cluster: routing by slot,
MOVED, ASK during a slot migration, scripts loaded on every primary."""

from __future__ import annotations

import hashlib
import time

import anyio
import pytest
import redis

import aioqueue
from aioqueue.connection_cluster import (
    ClusterLane,
    ClusterURL,
    SlotMap,
    command_key,
    connection_factory,
    key_slot,
)
from aioqueue.errors import ConfigurationError

from .conftest import FAST, running
from .harness.cluster import ClusterNode, LocalCluster
from .harness.cluster import key_slot as reference_slot


def make_lane(cluster: LocalCluster, *, size: int = 4, retries: int = 3) -> ClusterLane:
    url = ClusterURL.parse(cluster.url)
    return ClusterLane(SlotMap(url.seeds), connection_factory(url.node_url, decode_responses=True),
                       size=size, timeout_s=5.0, retries=retries)


def keys_on_every_primary(cluster: LocalCluster) -> dict[int, str]:
    found: dict[int, str] = {}
    for n in range(300):
        key = f"{{q{n}}}:job:1"
        found.setdefault(cluster.key_owner(key).port, key)
    assert len(found) == 3
    return found


def test_cluster_url_is_parsed_with_every_seed() -> None:
    url = ClusterURL.parse("redis+cluster://u:p%40ss@h1:7000,h2:7001/0?ssl_cert_reqs=none")
    assert url.seeds == (("h1", 7000), ("h2", 7001))
    assert url.node_url == "redis://u:p%40ss@h1:7000/0?ssl_cert_reqs=none"
    assert ClusterURL.parse("rediss+cluster://h").node_url == "rediss://h:6379"


@pytest.mark.parametrize("bad", ["redis+cluster://h:7000/3", "redis+cluster://:7000",
                                 "redis://h:7000"])
def test_bad_cluster_urls_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        ClusterURL.parse(bad)


def test_key_slot_matches_the_server() -> None:
    for key in ["a", "{user1000}.following", "foo{}{bar}", "{q}job:1", "x" * 100]:
        assert key_slot(key) == reference_slot(key)
    assert key_slot("{user1000}.following") == 3443  # from the cluster specification
    assert command_key(("EVALSHA", "sha", 2, "{q}a", "{q}b", "x")) == "{q}a"
    assert command_key(("EVALSHA", "sha", 0, "x")) is None
    assert command_key(("TIME",)) is None
    assert command_key(("HMGET", "{q}job:1", "st")) == "{q}job:1"


async def test_commands_and_scripts_go_to_the_primary_owning_the_slot(
        redis_cluster: LocalCluster) -> None:
    lane = make_lane(redis_cluster)
    source = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"
    sha = hashlib.sha1(source.encode()).hexdigest()
    try:
        assert await lane.execute("SCRIPT", "LOAD", source) == sha
        for port, key in keys_on_every_primary(redis_cluster).items():
            assert await lane.execute("EVALSHA", sha, 1, key, str(port)) == str(port)
            assert await lane.execute("HSET", key + "h", "f", "v") == 1
            replies = await lane.execute_many([("GET", key), ("HGET", key + "h", "f"),
                                               ("TIME",)])
            assert replies[:2] == [str(port), "v"]
            with redis_cluster.node_for_port(port).client() as direct:
                assert direct.get(key) == str(port)
    finally:
        await lane.close()


async def test_moved_reply_updates_the_slot_map_and_the_command_succeeds(
        redis_cluster: LocalCluster) -> None:
    lane = make_lane(redis_cluster)
    try:
        keys = keys_on_every_primary(redis_cluster)
        (right, key), (wrong, _) = list(keys.items())[:2]
        await lane.execute("SET", key, "x")
        lane.slot_map.moved(key_slot(key), ("127.0.0.1", wrong))  # a stale map
        assert await lane.execute("GET", key) == "x"
        assert lane.slot_map.owner(key_slot(key)) == ("127.0.0.1", right)
    finally:
        await lane.close()


def migrate_one_key(source: ClusterNode, target: ClusterNode, slot: int, key: str) -> None:
    """Start moving ``slot`` from ``source`` to ``target`` and move ``key``
    only: the slot stays MIGRATING/IMPORTING (ASK territory)."""
    target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id())
    source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id())
    source.call("MIGRATE", "127.0.0.1", target.port, key, 0, 5000)


async def test_ask_during_a_slot_migration_reaches_the_moved_key(
        redis_cluster: LocalCluster) -> None:
    lane = make_lane(redis_cluster, size=3)
    keys = keys_on_every_primary(redis_cluster)
    (source_port, key), (target_port, _) = list(keys.items())[:2]
    source = redis_cluster.node_for_port(source_port)
    target = redis_cluster.node_for_port(target_port)
    slot = key_slot(key)
    sibling = key.replace(":job:1", ":job:2")  # same slot, stays on the source
    try:
        await lane.execute("SET", key, "moved")
        await lane.execute("SET", sibling, "stayed")
        # several idle connections on the target: ASKING and the command must
        # still share one socket
        await lane.execute_many([("TIME",)] * 3)
        migrate_one_key(source, target, slot, key)
        assert await lane.execute("GET", key) == "moved"
        assert await lane.execute("GET", sibling) == "stayed"
        assert await lane.execute_many([("GET", key), ("GET", key)]) == ["moved", "moved"]
        assert lane.slot_map.owner(slot) == ("127.0.0.1", source_port)  # ASK changes no map
    finally:
        await lane.close()
        # finish the migration: the slot now belongs to the target
        source.call("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", sibling)
        for node in (target, source, *redis_cluster.primaries()):
            node.call("CLUSTER", "SETSLOT", slot, "NODE", target.node_id())
        redis_cluster.wait_healthy()


async def write_until(lane: ClusterLane, key: str, value: str, deadline_s: float) -> float:
    """Retry one SET as a role loop would (pause, try again) until it works;
    returns how long the key's slot could not be written."""
    started = time.monotonic()
    while True:
        try:
            assert await lane.execute("SET", key, value) == "OK"
            return time.monotonic() - started
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            assert time.monotonic() - started < deadline_s, f"{key} not writable in time"
            await anyio.sleep(0.05)


def replica_of(cluster: LocalCluster, primary: ClusterNode) -> ClusterNode:
    primary_id = primary.node_id()
    for line in str(primary.call("CLUSTER", "NODES")).splitlines():
        fields = line.split()
        if fields[3] == primary_id and "slave" in fields[2]:
            return cluster.node_for_port(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
    raise LookupError("no replica")


async def test_lane_follows_a_graceful_failover(own_cluster: LocalCluster) -> None:
    lane = make_lane(own_cluster)
    key = "{failover}:k"
    try:
        await lane.execute("SET", key, "before")
        old = own_cluster.key_owner(key)
        replica = replica_of(own_cluster, old)
        replica.call("CLUSTER", "FAILOVER")
        await write_until(lane, key, "after", 30)
        own_cluster.wait_healthy()
        assert own_cluster.key_owner(key) is replica
        assert await lane.execute("GET", key) == "after"
        assert lane.slot_map.owner(key_slot(key)) == ("127.0.0.1", replica.port)
    finally:
        await lane.close()


async def test_lane_follows_the_replica_of_a_killed_primary(own_cluster: LocalCluster) -> None:
    lane = make_lane(own_cluster, retries=1)
    key = "{killed}:k"
    try:
        await lane.execute("SET", key, "before")
        await lane.execute("WAIT", 1, 5000)
        old = own_cluster.key_owner(key)
        replica = replica_of(own_cluster, old)
        old.kill()
        outage = await write_until(lane, key, "after", 60)
        assert own_cluster.key_owner(key) is replica
        assert await lane.execute("GET", key) == "after"
        # about cluster-node-timeout (2 s) plus the election; generous on a loaded box
        assert outage < 30, outage
        print(f"\ncluster: slot unwritable for {outage:.2f}s after its primary was SIGKILLed "
              f"(cluster-node-timeout {own_cluster.node_timeout_ms} ms)")
    finally:
        await lane.close()


async def test_cluster_url_to_a_plain_server_is_refused_in_one_line(redis_url: str) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    app = aioqueue.App(f"redis+cluster://127.0.0.1:{port}/0")
    with pytest.raises(ConfigurationError, match="not a Redis Cluster"):
        async with app:
            pass


async def test_app_on_the_cluster_runs_queues_that_live_on_different_primaries(
        redis_cluster: LocalCluster) -> None:
    queues = {}
    for n in range(100):
        queues.setdefault(redis_cluster.key_owner(f"{{q{n}}}").port, f"q{n}")
    assert len(queues) == 3
    app = aioqueue.App(redis_cluster.url, worker=FAST)

    @app.task
    async def double(n: int) -> int:
        return n * 2

    async with app, running(app, queues=list(queues.values())):
        jobs = [await double.options(queue=q).enqueue(i) for i, q in enumerate(queues.values())]
        assert [await job.result(timeout=30) for job in jobs] == [0, 2, 4]
