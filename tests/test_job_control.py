"""Cancellation, progress and events, context, hooks, middleware, sync tasks,
dead letters and retention."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

import aioqueue
from aioqueue import JobContext

from .conftest import running


async def test_cancel_queued_and_scheduled_jobs(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    ran: list[str] = []

    @app.task
    async def work(label: str) -> None:
        ran.append(label)

    async with app:
        queued = await work.enqueue("queued")
        scheduled = await work.options(delay=0.3).enqueue("scheduled")
        kept = await work.enqueue("kept")
        assert await queued.cancel() is aioqueue.CancelOutcome.CANCELLED
        assert await scheduled.cancel() is aioqueue.CancelOutcome.CANCELLED
        assert await queued.status() is aioqueue.JobStatus.CANCELLED
        async with running(app):
            await kept.result(timeout=10)
            await anyio.sleep(0.5)  # past the scheduled job's due time
        with pytest.raises(aioqueue.JobCancelled):
            await queued.result(timeout=1)
        assert await scheduled.status() is aioqueue.JobStatus.CANCELLED
        # cancelling a finished job is a no-op that says so
        assert await kept.cancel() is aioqueue.CancelOutcome.ALREADY_FINISHED
        assert await app.job("nope").cancel() is aioqueue.CancelOutcome.NOT_FOUND
    assert ran == ["kept"]


async def test_cancel_running_job(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app(worker=aioqueue.WorkerSettings(
        lease_s=30, renew_interval_s=10, reaper_interval_s=0.05, block_s=0.2))
    started = anyio.Event()
    seen: dict[str, float] = {}

    @app.task(max_tries=5)
    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep(60)
        except BaseException as exc:
            seen["cancelled"] = time.monotonic()
            seen["type"] = type(exc).__name__  # type: ignore[assignment]
            raise
        finally:
            seen["finally"] = time.monotonic()

    async with app, running(app) as sup:
        job = await forever.enqueue()
        await started.wait()
        t0 = time.monotonic()
        assert await job.cancel("user asked") is aioqueue.CancelOutcome.REQUESTED
        with pytest.raises(aioqueue.JobCancelled):
            await job.result(timeout=5)
        # delivered over pub/sub, not at the next renewal 10 s later
        assert seen["cancelled"] - t0 < 1.0
        assert "finally" in seen and seen["type"] == "CancelledError"
        info = await job.info()
        assert info.status is aioqueue.JobStatus.CANCELLED
        assert info.error is not None and info.error["message"] == "user asked"
        assert info.deliveries == 1  # not retried
        assert sup.counters["cancelled"] == 1


async def test_cancel_request_missed_by_pubsub_is_caught_by_renewal(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()  # lease 1 s, renew every 0.25 s
    started = anyio.Event()

    @app.task
    async def forever() -> None:
        started.set()
        await anyio.sleep(60)

    async with app, running(app):
        job = await forever.enqueue()
        await started.wait()
        # flag the job as the cancel script would, without publishing
        await app.broker.client.hset(  # type: ignore[misc]
            app.broker.keys(app.default_queue).job(job.id), "cx", "quietly")
        with pytest.raises(aioqueue.JobCancelled):
            await job.result(timeout=5)


async def test_progress_and_events(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    go = anyio.Event()
    step = anyio.Event()

    @app.task
    async def resize(ctx: JobContext, images: int) -> int:
        await go.wait()
        for i in range(1, images + 1):
            await ctx.progress(i / images, f"resized {i}/{images}")
            if i == 1:
                await step.wait()
        return images

    async with app, running(app):
        job = await resize.enqueue(4)
        events: list[aioqueue.JobEvent] = []

        async def follow() -> None:
            async for event in job.events():
                events.append(event)

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            with anyio.fail_after(5):
                while app.results.parked < 1:  # the follower is subscribed and waiting
                    await anyio.sleep(0.01)
            go.set()
            with anyio.fail_after(5):
                while True:
                    info = await job.info()
                    if info.progress is not None:
                        break
                    await anyio.sleep(0.01)
            assert info.progress == aioqueue.Progress(0.25, "resized 1/4")
            assert info.status is aioqueue.JobStatus.ACTIVE
            step.set()
        assert await job.result(timeout=5) == 4
    assert events[-1].status is aioqueue.JobStatus.SUCCEEDED
    messages = [e.progress.message for e in events if e.progress]
    assert "resized 1/4" in messages
    assert messages[-1] == "resized 4/4"


async def test_context_hooks_and_middleware(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    calls: list[str] = []

    @app.on_startup
    async def open_client(a: aioqueue.App) -> None:
        calls.append("startup-1")
        a.state["client"] = "http-client"

    @app.on_startup
    async def second(a: aioqueue.App) -> None:
        calls.append("startup-2")

    @app.on_shutdown
    async def close_client(a: aioqueue.App) -> None:
        calls.append("shutdown-1")

    @app.on_shutdown
    async def close_second(a: aioqueue.App) -> None:
        calls.append("shutdown-2")

    @app.middleware
    async def outer(ctx: JobContext, call_next: Callable[[], Any]) -> Any:
        calls.append(f"outer-in {ctx.task_name}")
        result = await call_next()
        calls.append("outer-out")
        return result

    @app.middleware
    async def inner(ctx: JobContext, call_next: Callable[[], Any]) -> Any:
        calls.append("inner-in")
        return await call_next()

    @app.task(name="describe")
    async def describe(ctx: JobContext, word: str) -> str:
        calls.append("task")
        return (f"{word}:{ctx.job_id}:{ctx.attempt}:{ctx.queue}:{ctx.state['client']}:"
                f"{ctx.enqueued_at.year}")

    async with app:
        job = await describe.enqueue("hi")
        async with running(app):
            out = await job.result(timeout=10)
    assert out == f"hi:{job.id}:1:{app.default_queue}:http-client:{time.gmtime().tm_year}"
    assert calls == ["startup-1", "startup-2", "outer-in describe", "inner-in", "task",
                     "outer-out", "shutdown-2", "shutdown-1"]
    # a context task is still directly awaitable, with a local context
    assert (await describe("x")).startswith("x:local:1")


async def test_sync_task_runs_in_a_thread_without_blocking_async_jobs(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    threads: list[int] = []

    @app.task
    def blocking(seconds: float) -> str:
        threads.append(threading.get_ident())
        time.sleep(seconds)
        return "slept"

    @app.task
    async def quick(n: int) -> int:
        return n

    async with app, running(app):
        slow = await blocking.enqueue(1.0)
        with anyio.fail_after(5):
            while await slow.status() is not aioqueue.JobStatus.ACTIVE:
                await anyio.sleep(0.01)
        t0 = time.monotonic()
        assert await aioqueue.gather(*[await quick.enqueue(i) for i in range(20)]) == list(
            range(20))
        assert time.monotonic() - t0 < 0.8  # did not wait for the sleeping thread
        assert await slow.result(timeout=10) == "slept"
    assert threads and threads[0] != threading.get_ident()


async def test_sync_task_timeout_is_a_failure(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task(timeout=0.2)
    def stuck() -> None:
        time.sleep(1.0)

    async with app, running(app):
        with pytest.raises(aioqueue.JobFailed) as failed:
            await (await stuck.enqueue()).result(timeout=10)
        assert failed.value.error_type == "TimeoutError"


async def test_dead_letters_keep_every_error_and_can_be_replayed(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    broken = {"on": True}

    @app.task(max_tries=2)
    async def fragile(n: int) -> int:
        if broken["on"]:
            raise RuntimeError(f"broken {n}")
        return n

    async with app:
        jobs = [await fragile.enqueue(i) for i in range(3)]
        async with running(app):
            for job in jobs:
                with pytest.raises(aioqueue.JobFailed):
                    await job.result(timeout=10)
            dead = await app.dead_letters()
            assert {d.id for d in dead} == {j.id for j in jobs}
            first = next(d for d in dead if d.id == jobs[0].id)
            assert first.task_args == {"n": 0}
            assert [e["attempt"] for e in first.errors] == [1, 2]
            assert all("RuntimeError: broken 0" in e["traceback"] for e in first.errors)
            broken["on"] = False
            # replay one under its own id, one under a new id, purge the last
            assert await app.replay_dead([jobs[0].id]) == [jobs[0].id]
            assert await jobs[0].result(timeout=10) == 0
            (new_id,) = await app.replay_dead([jobs[1].id], new_ids=True)
            assert await app.job(new_id).result(timeout=10) == 1
            assert await app.purge_dead() == 1
            assert await app.dead_letters() == []
            assert await jobs[2].status() is aioqueue.JobStatus.UNKNOWN


async def test_custom_and_fixed_backoff(make_app: Callable[..., aioqueue.App]) -> None:
    seen: list[tuple[int, str]] = []

    def policy(retry_number: int, error: BaseException | None) -> float:
        seen.append((retry_number, type(error).__name__))
        return 0.01

    app = make_app(retry=aioqueue.RetryPolicy(custom=policy))

    @app.task(max_tries=3, fail_on=(KeyError,))
    async def flaky(kind: str) -> None:
        raise KeyError(kind) if kind == "key" else OSError(kind)

    async with app, running(app):
        with pytest.raises(aioqueue.JobFailed):
            await (await flaky.enqueue("os")).result(timeout=10)
        with pytest.raises(aioqueue.JobFailed) as failed:
            await (await flaky.enqueue("key")).result(timeout=10)
        assert failed.value.attempts == 1  # fail_on: no retry
    assert seen == [(1, "OSError"), (2, "OSError")]
    fixed = aioqueue.RetryPolicy.fixed(2.0)
    assert [fixed.delay_for(n) for n in (1, 2, 5)] == [2.0, 2.0, 2.0]
    expo = aioqueue.RetryPolicy.exponential(1.0, cap_s=5.0, jitter=False)
    assert [expo.delay_for(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


@pytest.mark.single_server
async def test_completed_work_does_not_grow_redis(
    make_app: Callable[..., aioqueue.App], redis_url: str
) -> None:
    app = make_app(result_ttl_s=1.0)

    @app.task
    async def noop(n: int) -> None:
        return None

    async with app, aioredis.Redis.from_url(redis_url) as admin:
        baseline_keys = await admin.dbsize()
        baseline_mem = (await admin.info("memory"))["used_memory"]
        n = 50_000
        for start in range(0, n, 5000):
            await noop.enqueue_many([noop.bind(i) for i in range(start, start + 5000)])
        with anyio.fail_after(120):
            await aioqueue.Supervisor(app, concurrency=200, burst=True).run()
        assert (await app.broker.stats(app.default_queue))["succeeded"] == n
        # once the result TTL has passed, the records are gone
        with anyio.fail_after(60):
            while await admin.dbsize() > baseline_keys + 10:
                await anyio.sleep(0.2)
        mem = (await admin.info("memory"))["used_memory"]
        assert mem - baseline_mem < 1_000_000, f"{mem - baseline_mem} bytes left"
