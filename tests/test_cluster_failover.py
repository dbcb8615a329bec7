"""Redis Cluster failover under a live producer and worker: the primary that
owns the queue's slot is SIGKILLed (its replica is promoted after
cluster-node-timeout) or handed over with ``CLUSTER FAILOVER``; both carry on
without a restart and every job written runs. The window is printed (``-s``);
README "Scaling" quotes it."""

from __future__ import annotations

from pathlib import Path

import pytest

import aioqueue
from aioqueue.server import ServerBinary

from .conftest import FAST
from .failover_driver import run_through_failover
from .harness.cluster import LocalCluster
from .test_cluster_lane import replica_of


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["sigkill", "cluster-failover"])
async def test_producer_and_worker_follow_a_cluster_failover(
        own_cluster: LocalCluster, how: str) -> None:
    app = aioqueue.App(own_cluster.url, worker=FAST, queue="orders", socket_timeout_s=1.0)
    old = own_cluster.key_owner("{orders}")
    replica = replica_of(own_cluster, old)

    def trigger() -> None:
        if how == "sigkill":
            old.kill()
        else:
            replica.call("CLUSTER", "FAILOVER")

    def switched() -> bool:
        try:
            return own_cluster.key_owner("{orders}") is replica
        except Exception:
            return False

    run = await run_through_failover(app, trigger, switched)
    print("\n" + run.summary(f"cluster failover ({how})"))


@pytest.mark.timeout(240)
async def test_no_replica_confirmed_enqueue_is_lost_when_a_primary_dies(
        server_binary: ServerBinary, tmp_path: Path) -> None:
    """Two replicas per primary and ``wait_replicas=1``: the queue's primary
    is SIGKILLed mid-stream; every enqueue that returned (a replica had it)
    runs, and after the promotion the other replica keeps confirming."""
    with LocalCluster(server_binary, tmp_path / "cluster", replicas=2) as cluster:
        app = aioqueue.App(cluster.url, worker=FAST, queue="orders", socket_timeout_s=1.0,
                           wait_replicas=1, wait_timeout_s=1.0)
        old = cluster.key_owner("{orders}")

        def switched() -> bool:
            try:
                return cluster.key_owner("{orders}") is not old
            except Exception:
                return False

        run = await run_through_failover(app, old.kill, switched)
        assert set(run.confirmed) <= run.done
        print("\n" + run.summary("cluster failover (sigkill, wait_replicas=1)"))
