"""The worker keeps its promises under cancellation, shutdown, lost leases
and several queues (issue #10 items 4, 5, 6, 7, 11, 13)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import aioqueue
from aioqueue.server import ServerProcess

from . import fault_app
from .conftest import FAST, running
from .helpers import History, WorkerProcess, wait_until


async def test_task_swallowing_its_cancellation_ends_cancelled(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    started = anyio.Event()

    @app.task
    async def stubborn() -> str:
        started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            return "I ignore cancellation"
        return "slept"

    async with app, running(app):
        job = await stubborn.enqueue()
        await started.wait()
        await job.cancel("stop it")
        with pytest.raises(aioqueue.JobCancelled):
            await job.result(timeout=10)
        assert await job.status() is aioqueue.JobStatus.CANCELLED


async def test_task_swallowing_its_timeout_fails_with_timeout_error(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task(timeout=0.2, max_tries=1)
    async def stubborn() -> str:
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            return "I ignore timeouts"
        return "slept"

    async with app, running(app):
        job = await stubborn.enqueue()
        with pytest.raises(aioqueue.JobFailed) as failed:
            await job.result(timeout=10)
        assert failed.value.error_type == "TimeoutError"


async def test_concurrency_is_a_limit_for_the_whole_worker(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    gate = anyio.Event()
    now = {"running": 0, "peak": 0}

    async def body() -> None:
        now["running"] += 1
        now["peak"] = max(now["peak"], now["running"])
        await gate.wait()
        now["running"] -= 1

    tasks = []
    for queue in ("qa", "qb", "qc"):
        @app.task(name=f"work_{queue}", queue=queue)
        async def work() -> None:
            await body()
        tasks.append(work)

    async with app:
        jobs = [await t.enqueue() for t in tasks for _ in range(5)]
        async with running(app, queues=["qa", "qb", "qc"], concurrency=4) as sup:
            await wait_until(lambda: now["running"] >= 4, 10, what="4 jobs running")
            # every fetcher has had its chance to claim beyond the limit
            await wait_until(lambda: sup.counters["started"] >= 4, 10)
            for _ in range(3):
                await anyio.sleep(0)
            assert sup.running_jobs <= 4
            gate.set()
            for job in jobs:
                await job.result(timeout=20)
    assert now["peak"] <= 4, f"{now['peak']} jobs ran at once with concurrency=4"


async def test_supervisor_without_queues_consumes_the_queues_of_registered_tasks(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task(queue="reports")
    async def report() -> str:
        return "done"

    @app.task
    async def plain() -> str:
        return "plain"

    async with app, running(app) as sup:
        assert set(sup.queues) == {"reports", app.default_queue}
        assert await (await report.enqueue()).result(timeout=10) == "done"
        assert await (await plain.enqueue()).result(timeout=10) == "plain"


async def test_shutdown_hands_back_a_job_claimed_during_the_stop(
    make_app: Callable[..., aioqueue.App],
) -> None:
    # an idle worker blocks in its wait for up to block_s (here 5 s)
    app = make_app(worker=aioqueue.WorkerSettings(
        lease_s=30, block_s=5.0, reaper_interval_s=0.05, shutdown_grace_s=1.0))
    ran: list[str] = []

    @app.task
    async def work() -> None:
        ran.append("ran")

    async with app:
        sup = aioqueue.Supervisor(app, concurrency=5)
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            await anyio.sleep(0.3)  # the fetcher is blocked in its wait
            t0 = time.monotonic()
            sup.request_shutdown()
            job = await work.enqueue()
        stopped_after = time.monotonic() - t0
        assert ran == [], "a job enqueued after the stop request ran"
        assert stopped_after < 3.0, f"stopping took {stopped_after:.1f}s (the wait was not cut)"
        info = await job.info()
        assert info.status is aioqueue.JobStatus.QUEUED
        keys = app.broker.keys(app.default_queue)
        assert await app.broker.client.zscore(keys.leases, job.id) is None


async def test_worker_that_lost_its_lease_stops_the_job(
    own_server: ServerProcess, make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app(own_server.url, socket_timeout_s=10.0)
    started = anyio.Event()
    stopped: dict[str, float] = {}

    @app.task(max_tries=5)
    async def long_job() -> None:
        started.set()
        try:
            await anyio.sleep(60)
        finally:
            stopped["at"] = time.monotonic()

    async with app, running(app) as sup:
        await long_job.enqueue()
        await started.wait()
        own_server.pause()  # renewals hang: the lease runs out on the server
        paused_at = time.monotonic()
        try:
            await wait_until(lambda: "at" in stopped, 10, what="the run to be cancelled")
        finally:
            own_server.resume()
        # one lease past the lease deadline (2 s after the last renewal),
        # not when the job ends
        assert stopped["at"] - paused_at <= 2 * FAST.lease_s + 0.5
        assert sup.counters["lost_leases"] == 1


async def test_progress_while_redis_is_unreachable_does_not_cost_a_try(
    own_server: ServerProcess, make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app(own_server.url, socket_timeout_s=0.3,
                   worker=aioqueue.WorkerSettings(lease_s=30, block_s=0.2,
                                                  reaper_interval_s=0.05))
    go = anyio.Event()
    reported = anyio.Event()

    @app.task(max_tries=1)
    async def report(ctx: aioqueue.JobContext) -> str:
        await go.wait()
        await ctx.progress(0.5, "halfway")
        reported.set()
        return "finished"

    async with app, running(app):
        job = await report.enqueue()
        await wait_until(lambda: _is_active(job), 10, what="job active")
        own_server.pause()
        try:
            go.set()
            with anyio.fail_after(10):
                await reported.wait()
        finally:
            own_server.resume()
        assert await job.result(timeout=20) == "finished"
        assert (await job.info()).attempt == 1


async def _is_active(job: aioqueue.Job[str]) -> bool:
    return await job.status() is aioqueue.JobStatus.ACTIVE


async def test_one_sigterm_ends_a_worker_after_a_sync_task_timed_out(redis_url: str) -> None:
    from . import sync_app

    worker = WorkerProcess("tests.sync_app:app", redis_url)
    try:
        sync_app.app.url = redis_url
        async with sync_app.app:
            job = await sync_app.stuck.enqueue()
            with pytest.raises(aioqueue.JobFailed) as failed:
                await job.result(timeout=20)
            assert failed.value.error_type == "TimeoutError"
        # its thread still sleeps (an hour): one SIGTERM must end the process
        worker.send(signal.SIGTERM)
        assert await worker.wait_exit(15) == 0
    finally:
        worker.close()


async def test_cancel_requested_while_its_worker_dies_ends_cancelled_without_running_again(
    redis_url: str, tmp_path: Path,
) -> None:
    history = History(tmp_path / "history")
    first = WorkerProcess("tests.fault_app:app", redis_url, env=history.env)
    second: WorkerProcess | None = None
    try:
        producer = fault_app.build_app(redis_url)
        async with producer:
            job = await producer.get_task("slow").enqueue(seconds=30.0, marker="m")
            await wait_until(lambda: history.starts("m"), 20, what="the first run")
            # the worker can no longer act on the request, then dies
            first.send(signal.SIGSTOP)
            assert await job.cancel("no longer needed") is aioqueue.CancelOutcome.REQUESTED
            first.send(signal.SIGKILL)
            await first.wait_exit(10)
            second = WorkerProcess("tests.fault_app:app", redis_url, env=history.env)
            with pytest.raises(aioqueue.JobCancelled):
                await job.result(timeout=30)
            info = await job.info()
            assert info.status is aioqueue.JobStatus.CANCELLED
            assert info.error is not None and info.error["message"] == "no longer needed"
        # the request outlived the worker: the job never ran again in full
        assert history.ends("m") == []
        assert len(history.starts("m")) == 1
    finally:
        first.close()
        if second is not None:
            second.close()
