"""Sharded pub/sub on Redis Cluster: job events go out with SPUBLISH to the
shard of the queue's slot (never PUBLISH, which the cluster bus copies to
every node); results and cancellations arrive through SSUBSCRIBE, also after
the queue's primary failed over."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

import aioqueue
from aioqueue.broker_admin import BrokerAdmin
from aioqueue.scripts import SCRIPT_NAMES, load_script

from .conftest import FAST, running
from .harness.cluster import ClusterNode, LocalCluster
from .test_cluster_lane import replica_of

#: renewals far apart: only the cancel notification can stop a run in time
SLOW_RENEWAL = dataclasses.replace(FAST, lease_s=60.0, renew_interval_s=20.0)


def test_scripts_publish_sharded_only_when_asked() -> None:
    publishing = [name for name in SCRIPT_NAMES
                  if "redis.call('PUBLISH'" in load_script(name).source]
    assert {"settle", "claim", "cancel", "workflow_cancel", "progress"} <= set(publishing)
    for name in publishing:
        sharded = load_script(name, sharded=True).source
        assert "'PUBLISH'" not in sharded and "redis.call('SPUBLISH', channel" in sharded


def _tasks(app: aioqueue.App) -> tuple[aioqueue.Task, aioqueue.Task]:  # type: ignore[type-arg]
    @app.task(name="echo")
    async def echo(x: int) -> int:
        return x

    @app.task(name="sleepy")
    async def sleepy(seconds: float) -> None:
        await anyio.sleep(seconds)

    return echo, sleepy


async def _result_and_cancel_arrive(app: aioqueue.App, echo: aioqueue.Task,  # type: ignore[type-arg]
                                    sleepy: aioqueue.Task, n: int) -> None:  # type: ignore[type-arg]
    job = await echo.enqueue(n)
    assert await job.result(timeout=10) == n
    long = await sleepy.enqueue(60.0)
    with anyio.fail_after(10):
        while await long.status() is not aioqueue.JobStatus.ACTIVE:
            await anyio.sleep(0.02)
    await long.cancel()
    with pytest.raises(aioqueue.JobCancelled):
        await long.result(timeout=3)  # renewals are 20 s apart: the message stopped it


def _calls(node: ClusterNode, command: str) -> int:
    with node.client(socket_timeout=5) as client:
        stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_results_and_cancels_use_sharded_pubsub(redis_cluster: LocalCluster) -> None:
    for node in redis_cluster.nodes:
        node.call("CONFIG", "RESETSTAT")
    app = aioqueue.App(redis_cluster.url, worker=SLOW_RENEWAL, queue="events")
    echo, sleepy = _tasks(app)
    async with app, running(app):
        await _result_and_cancel_arrive(app, echo, sleepy, 1)
        owner = redis_cluster.key_owner("{events}")
        subscribed = owner.call("PUBSUB", "SHARDCHANNELS", "*{events}*")
        assert any(str(c).endswith("cancel") for c in subscribed), subscribed
    assert sum(_calls(node, "spublish") for node in redis_cluster.primaries()) > 0
    assert sum(_calls(node, "publish") for node in redis_cluster.nodes) == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["cluster-failover", "sigkill"])
async def test_listeners_follow_a_failover(own_cluster: LocalCluster, how: str) -> None:
    """Waiters across the failover get their result; afterwards results and
    cancels arrive on the promoted replica (the listener re-subscribed)."""
    app = aioqueue.App(own_cluster.url, worker=SLOW_RENEWAL, queue="events",
                       socket_timeout_s=1.0)
    echo, sleepy = _tasks(app)
    old = own_cluster.key_owner("{events}")
    replica = replica_of(own_cluster, old)
    async with app, running(app):
        await _result_and_cancel_arrive(app, echo, sleepy, 1)
        # a waiter subscribed before the failover, on a job that ends after it
        later = await sleepy.enqueue(1.0)
        async with anyio.create_task_group() as tg:
            done = anyio.Event()

            async def wait_later() -> None:
                while True:
                    try:
                        await later.result(timeout=60)
                        break
                    except aioqueue.RedisUnavailable:
                        # documented: raised while the slot has no primary
                        # (SIGKILL, until the replica is promoted)
                        assert how == "sigkill"
                        await anyio.sleep(0.2)
                done.set()

            tg.start_soon(wait_later)
            await anyio.sleep(0.2)
            if how == "sigkill":
                old.kill()
            else:
                replica.call("CLUSTER", "FAILOVER")
            with anyio.fail_after(60):
                while True:
                    try:
                        if own_cluster.key_owner("{events}") is replica:
                            break
                    except Exception:
                        pass
                    await anyio.sleep(0.1)
            with anyio.fail_after(30):
                await done.wait()
        with anyio.fail_after(30):
            # the worker's cancel listener re-subscribed on the promoted replica
            # (a cancel sent before that is caught by the next renewal only:
            # 20 s here)
            while not any(str(c).endswith("cancel") for c in replica.call(
                    "PUBSUB", "SHARDCHANNELS", "*{events}*")):
                await anyio.sleep(0.05)
        with anyio.fail_after(60):
            # the first calls after a SIGKILL may still meet the cluster down
            while True:
                try:
                    await _result_and_cancel_arrive(app, echo, sleepy, 2)
                    break
                except aioqueue.RedisUnavailable:
                    await anyio.sleep(0.2)


async def test_a_purge_wakes_waiters_on_a_cluster(redis_cluster: LocalCluster) -> None:
    """The operator's purge (its own script, outside the broker's runner)
    publishes sharded too: a waiter hears its job end cancelled at once."""
    app = aioqueue.App(redis_cluster.url, queue="purged")
    echo, _ = _tasks(app)
    async with app:
        job = await echo.enqueue(1)
        async with anyio.create_task_group() as tg:
            outcome: list[BaseException] = []

            async def wait() -> None:
                try:
                    await job.result(timeout=5)
                except aioqueue.JobCancelled as exc:
                    outcome.append(exc)

            tg.start_soon(wait)
            with anyio.fail_after(5):
                while not app.results.parked:  # it read "queued" and waits for a message
                    await anyio.sleep(0.01)
            admin = BrokerAdmin(app.broker.lane, app.prefix)
            assert await admin.purge("purged", "waiting", result_ttl_ms=60_000) == 1
            with anyio.fail_after(2):
                while not outcome:
                    await anyio.sleep(0.01)
