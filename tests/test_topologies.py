"""Smoke tests of the local Redis Cluster and Sentinel fixtures the scale-out
tests build on: they must be what they claim (every slot served, a replica per
primary, a Sentinel failover that promotes the replica)."""

from __future__ import annotations

import time

import redis

from .harness.cluster import SLOTS, LocalCluster, key_slot
from .harness.sentinel import LocalSentinel


def test_local_cluster_serves_every_slot_from_three_replicated_primaries(
        redis_cluster: LocalCluster) -> None:
    primaries = redis_cluster.primaries()
    assert len(primaries) == 3
    ranges = sorted((int(start), int(end), len(rest)) for start, end, *rest
                    in redis_cluster.nodes[0].call("CLUSTER", "SLOTS"))
    assert ranges[0][0] == 0 and ranges[-1][1] == SLOTS - 1
    assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(entries == 2 for _, _, entries in ranges)  # a primary and one replica each
    # one key per primary, written through redis-py's cluster client
    keys = {}
    for n in range(200):
        key = f"{{q{n}}}:k"
        keys.setdefault(redis_cluster.key_owner(key).port, key)
    assert len(keys) == 3
    client = redis.RedisCluster.from_url(redis_cluster.seed_url, decode_responses=True)
    try:
        for port, key in keys.items():
            assert client.keyslot(key) == key_slot(key)
            client.set(key, str(port))
            node = redis_cluster.node_for_port(port)
            with node.client() as direct:
                assert direct.get(key) == str(port)
                assert direct.execute_command("WAIT", 1, 5000) == 1  # its replica has it
    finally:
        client.close()


def test_local_cluster_flush_leaves_no_key(redis_cluster: LocalCluster) -> None:
    for node in redis_cluster.primaries():
        with node.client() as direct:
            assert direct.dbsize() == 0


def test_local_sentinel_promotes_the_replica_when_the_primary_dies(
        own_sentinel: LocalSentinel) -> None:
    old = own_sentinel.current_primary()
    assert old is own_sentinel.primary
    with redis.Redis(host="127.0.0.1", port=old.port, decode_responses=True) as conn:
        conn.set("k", "before")
        assert conn.execute_command("WAIT", 1, 5000) == 1
    old.kill()
    started = time.monotonic()
    deadline = started + 30
    while own_sentinel.current_primary() is old:
        assert time.monotonic() < deadline, "no failover within 30 s"
        time.sleep(0.05)
    new = own_sentinel.current_primary()
    assert new is own_sentinel.replicas[0]
    with redis.Redis(host="127.0.0.1", port=new.port, decode_responses=True) as conn:
        assert conn.get("k") == "before"
        deadline = time.monotonic() + 10
        while conn.info("replication")["role"] != "master":  # Sentinel sends REPLICAOF NO ONE
            assert time.monotonic() < deadline
            time.sleep(0.05)
        conn.set("k", "after")
