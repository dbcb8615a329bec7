"""Operator queries (issue 11): the queue registry, queue summaries, job
pages, finding a job's queue and purging waiting jobs."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
import redis.asyncio as aioredis

import aioqueue
from aioqueue.broker_admin import REGISTRY_LIMIT, BrokerAdmin, JobState

from .conftest import running
from .helpers import wait_until


def _admin(app: aioqueue.App) -> BrokerAdmin:
    return BrokerAdmin(app.broker.lane, app.prefix)


async def test_queue_registry_is_bounded_and_keeps_the_newest(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    app = make_app()
    async with app:
        admin = _admin(app)
        await admin.register_queues(f"old{i:04d}" for i in range(REGISTRY_LIMIT))
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        # make the old ones older than the next registration
        await client.zadd(admin.registry_key, {f"old{i:04d}": 1 for i in range(10)})
        await client.aclose()
        await admin.register_queues(["fresh-a", "fresh-b"])
        known = await admin.known_queues()
    assert len(known) == REGISTRY_LIMIT
    assert {"fresh-a", "fresh-b"} <= set(known)
    assert "old0000" not in known and "old0001" not in known


async def test_summary_counts_waiting_by_priority_and_the_oldest_age(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        for n in range(3):
            await work.options(priority=5).enqueue(n)
        await work.enqueue(9)
        await work.options(delay=60).enqueue(10)
        (summary,) = await _admin(app).summaries([queue_name])
    assert summary.waiting_by_priority == {5: 3, 0: 1}
    assert summary.waiting == 4
    assert (summary.scheduled, summary.running, summary.dead) == (1, 0, 0)
    assert summary.paused is False
    assert summary.oldest_waiting_age_s is not None and 0 <= summary.oldest_waiting_age_s < 30


async def test_summary_of_an_empty_unknown_queue_is_all_zero(
        make_app: Callable[..., aioqueue.App]) -> None:
    async with make_app() as app:
        (summary,) = await _admin(app).summaries(["nothing-here"])
    assert summary.waiting == 0 and summary.oldest_waiting_age_s is None
    assert summary.counters == {}


async def test_waiting_pages_cover_every_job_once_in_claim_order(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)

    @app.task
    async def work(n: int) -> int:
        return n

    expected: list[str] = []
    async with app:
        by_prio: dict[int, list[str]] = {9: [], 3: [], 0: []}
        for n in range(25):
            prio = (9, 3, 0)[n % 3]
            job = await work.options(priority=prio).enqueue(n)
            by_prio[prio].append(job.id)
        expected = by_prio[9] + by_prio[3] + by_prio[0]
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await _admin(app).jobs(queue_name, "waiting", limit=4, cursor=cursor)
            assert page.total == 25 and len(page.jobs) <= 4
            seen.extend(j.id for j in page.jobs)
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == expected
    assert pages == 7


async def test_dead_page_is_newest_first_with_task_and_attempts(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)

    @app.task(max_tries=2)
    async def boom(n: int) -> None:
        raise ValueError(n)

    async with app:
        jobs = []
        async with running(app):
            for n in range(3):
                job = await boom.enqueue(n)
                jobs.append(job)
                with pytest.raises(aioqueue.JobFailed):
                    await job.result(timeout=20)
        page = await _admin(app).jobs(queue_name, JobState.DEAD, limit=2)
        rest = await _admin(app).jobs(queue_name, JobState.DEAD, limit=2,
                                      cursor=page.next_cursor)
    assert [j.id for j in page.jobs + rest.jobs] == [j.id for j in reversed(jobs)]
    assert rest.next_cursor is None
    assert all(r.task.endswith("boom") and r.attempt == 2 and r.status == "failed"
               for r in page.jobs)


async def test_bad_cursor_and_limit_are_refused(
        make_app: Callable[..., aioqueue.App]) -> None:
    async with make_app() as app:
        with pytest.raises(aioqueue.ConfigurationError):
            await _admin(app).jobs("default", "scheduled", cursor="x:y")
        with pytest.raises(aioqueue.ConfigurationError):
            await _admin(app).jobs("default", "scheduled", limit=0)
        with pytest.raises(ValueError):
            await _admin(app).jobs("default", "everything")


async def test_find_queues_names_the_queue_holding_a_job(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task(queue="alpha")
    async def work() -> None: ...

    async with app:
        job = await work.enqueue()
        assert await _admin(app).find_queues(job.id, ["beta", "alpha", "default"]) == ["alpha"]
        assert await _admin(app).find_queues("nope", ["alpha"]) == []


async def test_purge_cancels_waiting_jobs_and_tells_their_waiters(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        waiting = [await work.options(priority=n % 2).enqueue(n) for n in range(30)]
        later = await work.options(delay=60).enqueue(99)
        purged = await _admin(app).purge(queue_name, "waiting", result_ttl_ms=60_000, batch=7)
        assert purged == 30
        with pytest.raises(aioqueue.JobCancelled):
            await waiting[0].result(timeout=5)
        (summary,) = await _admin(app).summaries([queue_name])
        assert summary.waiting == 0 and summary.scheduled == 1
        assert summary.counters["purged"] == 30
        assert await later.status() is aioqueue.JobStatus.SCHEDULED
        assert await _admin(app).purge(queue_name, "scheduled", result_ttl_ms=60_000) == 1
        assert await later.status() is aioqueue.JobStatus.CANCELLED
        # the queue still works afterwards
        fresh = await work.enqueue(7)
        async with running(app):
            assert await fresh.result(timeout=20) == 7


async def test_purge_with_a_foreign_key_changes_nothing(
        make_app: Callable[..., aioqueue.App], queue_name: str, redis_url: str) -> None:
    app = make_app(queue=queue_name)

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        job = await work.enqueue(1)
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        await client.set(app.broker.keys(queue_name).stats, "not a hash")
        await client.aclose()
        with pytest.raises(aioqueue.WrongKeyType):
            await _admin(app).purge(queue_name, "waiting", result_ttl_ms=60_000)
        assert await job.status() is aioqueue.JobStatus.QUEUED
        (summary,) = await _admin(app).summaries(["default"])


async def test_paused_queue_starts_nothing_new_and_running_jobs_finish(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)
    release = anyio.Event()

    @app.task
    async def hold() -> str:
        await release.wait()
        return "held"

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        admin = _admin(app)
        async with running(app):
            held = await hold.enqueue()

            async def is_active() -> bool:
                return await held.status() is aioqueue.JobStatus.ACTIVE

            await wait_until(is_active, 10, what="hold running")
            await admin.pause(queue_name)
            waiting = await add.enqueue(1, 2)
            # the claim script itself refuses: any worker, now or after a restart
            claimed, _ = await app.broker.claim(app.broker.lane, queue_name, 10, 1000, "probe")
            assert claimed == []
            release.set()
            assert await held.result(timeout=10) == "held"
            assert await waiting.status() is aioqueue.JobStatus.QUEUED
            (summary,) = await admin.summaries([queue_name])
            assert summary.paused and summary.waiting == 1
            await admin.resume(queue_name)
            assert await waiting.result(timeout=10) == 3
        assert not await admin.is_paused(queue_name)


async def test_refused_queue_registry_never_stops_an_app_opening(
        make_app: Callable[..., aioqueue.App], redis_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await client.set(f"{app.prefix}:queues", "not a zset")
    await client.aclose()
    async with app, running(app):
        assert await (await add.enqueue(1, 2)).result(timeout=10) == 3
    assert any("queue registry not updated" in r.getMessage() for r in caplog.records)


async def test_summary_counts_jobs_held_by_limits_as_waiting_like_queue_info(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    # Given jobs waiting in a concurrency group, and jobs held back by a rate
    # limit (a worker started one; the claim moved the others to the held list)
    app = make_app(queue=queue_name)

    @app.task(concurrency_key=lambda customer, **_: customer, max_concurrency=1)
    async def export(customer: str) -> str:
        return customer

    @app.task(rate_limit="1/h")
    async def call_api(n: int) -> int:
        return n

    async with app:
        for n in range(3):
            await call_api.enqueue(n)
        async with running(app):
            await wait_until(lambda: _succeeded(app, 1), 30, what="one call_api run")
        for customer in ("a", "a", "b"):
            await export.enqueue(customer)
        counted = (await app.queue_info())["waiting"]
        (summary,) = await _admin(app).summaries([queue_name])
    # Then the operator's summary (aioqueue info, dashboard, metrics) counts
    # them as waiting, as app.queue_info() does: 2 held + 3 grouped
    assert counted == 5
    assert summary.waiting == 5
    assert summary.held == 5


async def _succeeded(app: aioqueue.App, n: int) -> bool:
    return (await app.queue_info())["running"] == 0 and (
        await _admin(app).summaries([app.default_queue]))[0].counters.get("succeeded") == n
