"""The worker registry (issue 11): heartbeats on server time, lost workers,
and a heartbeat failure that never stops the worker."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable

import anyio
import pytest
import redis.asyncio as aioredis

import aioqueue
from aioqueue.broker_workers import WorkerRegistry, WorkerState
from aioqueue.cli import main
from aioqueue.heartbeat import Heartbeat, WorkerActivity

from . import ops_app
from .conftest import FAST, running
from .helpers import wait_until

BEATING = dataclasses.replace(FAST, heartbeat_interval_s=0.1)


def _registry(app: aioqueue.App) -> WorkerRegistry:
    return WorkerRegistry(app.broker.lane, app.prefix)


async def test_running_worker_lists_its_jobs_and_leaves_when_it_stops(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, worker=BEATING)
    release = anyio.Event()

    @app.task
    async def hold() -> None:
        await release.wait()

    async with app:
        async with running(app, concurrency=7, worker_id="w-one") as supervisor:
            job = await hold.enqueue()

            async def listed_with_job() -> list[aioqueue.broker_workers.WorkerInfo]:
                workers, _ = await _registry(app).workers()
                return [w for w in workers if job.id in w.running_ids]

            (worker,) = await wait_until(listed_with_job, 10, what="heartbeat with the job")
            assert worker.id == supervisor.worker_id == "w-one"
            assert worker.state is WorkerState.ALIVE
            assert worker.pid == os.getpid() and worker.queues == [queue_name]
            assert worker.concurrency == 7 and worker.running == 1
            assert worker.interval_s == pytest.approx(0.1)
            release.set()
            await job.result(timeout=10)

            async def counted() -> bool:
                workers, _ = await _registry(app).workers()
                return bool(workers) and workers[0].counters.get("succeeded") == 1

            await wait_until(counted, 10, what="succeeded counter in the heartbeat")
        workers, total = await _registry(app).workers()
        assert workers == [] and total == 0
        # the worker registered its queue too
        assert queue_name in await aioqueue.broker_admin.BrokerAdmin(
            app.broker.lane, app.prefix).known_queues()


async def test_silent_worker_shows_as_lost_then_is_forgotten(
        make_app: Callable[..., aioqueue.App]) -> None:
    async with make_app() as app:
        beat = Heartbeat(_registry(app), worker_id="ghost", queues=["default"], concurrency=3,
                         activity=lambda: WorkerActivity(["job-a", "job-b"], {}),
                         interval_s=0.05, retention_s=1.0)
        assert await beat.step()
        (worker,), _ = await _registry(app).workers()
        assert worker.state is WorkerState.ALIVE and worker.running_ids == ["job-a", "job-b"]

        async def lost() -> bool:
            (w,), _ = await _registry(app).workers()
            return w.state is WorkerState.LOST

        await wait_until(lost, 5, what="the silent worker shown as lost")

        async def forgotten() -> bool:
            workers, _ = await _registry(app).workers()
            return workers == []

        await wait_until(forgotten, 5, what="the silent worker's record expired")


async def test_heartbeat_refused_by_redis_never_stops_the_worker(
        make_app: Callable[..., aioqueue.App], queue_name: str, redis_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(queue=queue_name, worker=BEATING)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await client.set(f"{app.prefix}:{{workers}}", "not a zset")
    await client.aclose()
    with caplog.at_level(logging.WARNING, logger="aioqueue.worker"):
        async with app, running(app):
            first = await add.enqueue(1, 2)
            assert await first.result(timeout=10) == 3
            # several heartbeat intervals later the worker still runs jobs
            await wait_until(lambda: sum("heartbeat not written" in r.getMessage()
                                         for r in caplog.records), 10, what="warning")
            second = await add.enqueue(2, 3)
            assert await second.result(timeout=10) == 5
    assert sum("heartbeat not written" in r.getMessage() for r in caplog.records) == 1


def test_workers_command_shows_alive_and_lost_workers(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    app = ops_app.app
    app.url = redis_url

    async def setup() -> None:
        async with app:
            for worker_id, interval in (("alive-1", 60.0), ("lost-1", 0.01)):
                await Heartbeat(_registry(app), worker_id=worker_id, queues=["ops"],
                                concurrency=5,
                                activity=lambda: WorkerActivity(["j1"], {"succeeded": 4}),
                                interval_s=interval, retention_s=120).step()

            async def one_lost() -> bool:
                workers, _ = await _registry(app).workers()
                return any(w.state is WorkerState.LOST for w in workers)

            await wait_until(one_lost, 5, what="lost-1 lost")

    anyio.run(setup)
    assert main(["workers", "tests.ops_app:app", "--url", redis_url]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:3]}
    assert rows["alive-1"][1] == "alive" and rows["lost-1"][1] == "lost"
    assert "lost worker lost-1: its jobs recover when their leases expire: j1" in out
    assert out.rstrip().endswith("1 alive, 1 lost (2 in the registry)")
    assert main(["workers", "tests.ops_app:app", "--url", redis_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {w["id"]: w["counters"]["succeeded"] for w in data} == {"alive-1": 4, "lost-1": 4}
    assert main(["info", "tests.ops_app:app", "--url", redis_url, "--json",
                 "--queues", "ops"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["workers"] == 1


async def test_heartbeat_off_keeps_the_worker_out_of_the_registry(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    """``WorkerSettings(heartbeat=False)`` (to measure what heartbeats cost):
    jobs run, nothing is written to the worker registry."""
    app = make_app(queue=queue_name, worker=dataclasses.replace(BEATING, heartbeat=False))

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app, running(app) as supervisor:
        assert await (await add.enqueue(1, 2)).result(timeout=10) == 3
        # a beating worker is in the registry after its first beat (0.1 s);
        # this one never beats
        assert supervisor.heartbeat is None
        assert await _registry(app).workers() == ([], 0)
