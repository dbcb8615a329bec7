"""Awaiting results at scale: one listener, no polling, nothing missed."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
import redis.asyncio as aioredis

import aioqueue
from aioqueue.broker import Settlement

from .conftest import running


async def _clients_named(url: str, name: str) -> int:
    async with aioredis.Redis.from_url(url) as r:
        clients = await r.client_list()
    return sum(1 for c in clients if c.get("name") == name)


@pytest.mark.single_server
async def test_ten_thousand_waiters_share_a_bounded_pool(
    make_app: Callable[..., aioqueue.App], redis_url: str
) -> None:
    # Given a producer with a pool of at most 10 connections
    producer = make_app(max_connections=10, redis_options={"client_name": "producer"})
    worker_app = make_app()

    async def square(n: int) -> int:
        return n * n

    task = producer.task(name="square")(square)
    worker_app.task(name="square")(square)

    n = 10_000
    peak = 0
    async with producer, worker_app:
        jobs = await task.enqueue_many([task.bind(i) for i in range(n)])
        results: list[int] = []

        async def wait_all() -> None:
            results.extend(await aioqueue.gather(*jobs, timeout=120))

        # When 10,000 result() calls wait at once while a worker drains the queue
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_all)
            with anyio.fail_after(30):
                while producer.results.waiting < n:
                    await anyio.sleep(0.05)
            peak = max(peak, await _clients_named(redis_url, "producer"))
            async with running(worker_app, concurrency=200):
                while not results:
                    peak = max(peak, await _clients_named(redis_url, "producer"))
                    await anyio.sleep(0.1)
        # Then every result arrived over at most the 10 command connections,
        # the one listener and one connection for occasional admin commands
        assert results == [i * i for i in range(n)]
        assert 1 <= peak <= 10 + 2
        assert producer.results.waiting == 0


async def test_result_of_job_finished_before_the_wait(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task
    async def one() -> int:
        return 1

    async with app:
        job = await one.enqueue()
        async with running(app):
            while await job.status() is not aioqueue.JobStatus.SUCCEEDED:
                await anyio.sleep(0.01)
        # no worker any more: the result must come from the record, not a message
        assert await job.result(timeout=1) == 1


@pytest.mark.single_server
async def test_listener_reconnect_during_wait_misses_nothing(
    make_app: Callable[..., aioqueue.App], redis_url: str
) -> None:
    app = make_app()

    @app.task
    async def one() -> int:
        return 1

    async with app:
        job = await one.enqueue()
        async with anyio.create_task_group() as tg:
            got: list[int] = []

            async def waiter() -> None:
                got.append(await job.result(timeout=20))

            tg.start_soon(waiter)
            channel = app.broker.keys(app.default_queue).done_channel(job.id)
            async with aioredis.Redis.from_url(redis_url) as admin:
                with anyio.fail_after(5):
                    while (await admin.pubsub_numsub(channel))[0][1] < 1 \
                            or app.results.parked < 1:
                        await anyio.sleep(0.01)
                # When the listener's connection is cut and the job ends meanwhile
                assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
            broker, q = app.broker, app.default_queue
            async with broker.blocking_client("manual") as conn:
                (claimed,), _ = await broker.claim(conn, q, 1, 10_000, "manual")
            await broker.settle(q, [Settlement(job.id, claimed.token, "ok", "7")],
                                default_result_ttl_ms=60_000, dead_letter_ttl_ms=60_000)
        # Then the waiter still gets the result
        assert got == [7]
        assert app.results.reconnects >= 1


async def test_expired_result_raises_result_expired(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task(result_ttl=0.2)
    async def short_lived() -> int:
        return 5

    async with app, running(app):
        job = await short_lived.enqueue()
        assert await job.result(timeout=10) == 5
        with anyio.fail_after(5):
            while await job.status() is not aioqueue.JobStatus.UNKNOWN:
                await anyio.sleep(0.05)
        with pytest.raises(aioqueue.ResultExpired):
            await job.result(timeout=1)
        # a handle rebuilt from the id cannot know the job existed
        with pytest.raises(aioqueue.JobNotFound):
            await app.job(job.id).result(timeout=1)


async def test_gather_raises_the_failure(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task
    async def maybe(fail: bool) -> str:
        if fail:
            raise ValueError("no")
        return "yes"

    async with app, running(app):
        ok = await maybe.enqueue(False)
        bad = await maybe.enqueue(True)
        assert await aioqueue.gather(ok, ok) == ["yes", "yes"]
        with pytest.raises(aioqueue.JobFailed):
            await aioqueue.gather(ok, bad)


async def test_result_wait_reads_the_record_only_when_the_job_may_have_ended(
    make_app: Callable[..., aioqueue.App], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 'active' and 'progress' notices say the job has not ended: a
    waiter does not read the record again for them (one round trip less per
    awaited result). It reads once at the start and once after the end."""
    app = make_app()
    release = anyio.Event()

    @app.task
    async def slow(ctx: aioqueue.JobContext) -> int:
        await ctx.progress(0.5, "half")
        await release.wait()
        return 1

    async with app:
        job = await slow.enqueue()
        reads: list[str] = []
        job_fields = app.broker.job_fields

        async def counting(queue: str, job_id: str, *fields: object) -> list[str | None]:
            if job_id == job.id:
                reads.append(job_id)
            return await job_fields(queue, job_id, *fields)  # type: ignore[arg-type]

        monkeypatch.setattr(app.broker, "job_fields", counting)
        async with anyio.create_task_group() as tg:
            results: list[int] = []

            async def wait() -> None:
                results.append(await job.result(timeout=30))

            tg.start_soon(wait)
            async with running(app):
                with anyio.fail_after(10):
                    while (await job_fields(job.queue, job.id, "pg"))[0] is None:
                        await anyio.sleep(0.01)  # polls the record, not the waiter
                release.set()
        assert results == [1]
        assert len(reads) == 2
