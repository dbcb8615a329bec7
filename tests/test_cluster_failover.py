"""Redis Cluster failover under a live producer and worker: the primary that
owns the queue's slot is SIGKILLed (its replica is promoted after
cluster-node-timeout) or handed over with ``CLUSTER FAILOVER``; both carry on
without a restart and every job written runs. The window is printed (``-s``);
README "Scaling" quotes it."""

from __future__ import annotations

import pytest

import aioqueue

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
