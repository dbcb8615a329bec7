"""Global rate limits (#13 item 1): enforced by the claim script on the
server's clock, across every worker and process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio

import aioqueue
from aioqueue.broker_flow import FlowLimits
from aioqueue.flow import RateLimit, RateLimited

from .conftest import running, worker_process
from .flow_app import QUEUE, TICK_LIMIT
from .harness.checker import fsck, snapshot

pytestmark = pytest.mark.anyio


def _flow(app: aioqueue.App) -> FlowLimits:
    return FlowLimits(app.broker.lane, app.prefix)


def _start_times(url: str, prefix: str, queue: str, ids: list[str]) -> list[int]:
    with redis.Redis.from_url(url) as client:
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(f"{prefix}:{{{queue}}}:job:{job_id}", "ts")
        return sorted(int(ts) for ts in pipe.execute())


def _evalsha_calls(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _wait_succeeded(app: aioqueue.App, queue: str, n: int, timeout_s: float) -> None:
    with anyio.fail_after(timeout_s):
        while (await app.broker.stats(queue)).get("succeeded", 0) < n:
            await anyio.sleep(0.1)


async def test_rate_limit_holds_across_worker_processes(redis_url: str) -> None:
    """Three worker processes drain 400 jobs of a task limited to 50/s: the
    starts (server time) come at 50/s within 5%, no second of them holds
    more than the limit plus the burst, and idle workers do not spin."""
    from .flow_app import build

    rate, burst, n = TICK_LIMIT.count, TICK_LIMIT.burst, 400
    app = build(redis_url)
    async with app:  # stores the limit declared in code
        tick = app.tasks["tick"]
        jobs = await tick.enqueue_many([tick.bind(i) for i in range(n)])
        calls_before = _evalsha_calls(redis_url)
        workers = [worker_process("tests.flow_app:app", redis_url, "--concurrency", "8")
                   for _ in range(3)]
        try:
            await _wait_succeeded(app, QUEUE, n, timeout_s=60)
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(timeout=20)
        calls = _evalsha_calls(redis_url) - calls_before
        starts = _start_times(redis_url, app.prefix, QUEUE, [j.id for j in jobs])
    steady = starts[burst:]
    measured = (len(steady) - 1) / ((steady[-1] - steady[0]) / 1000)
    assert rate * 0.95 <= measured <= rate * 1.05, measured
    most_in_a_second = max(
        sum(1 for t in starts[i:] if t < start + 1000) for i, start in enumerate(starts))
    assert most_in_a_second <= rate + burst
    # each idle fetcher claims at most once per next start (or block_s), each
    # job costs one claim and one settle: spinning would be thousands per second
    seconds = (starts[-1] - starts[0]) / 1000 + 3
    assert calls <= 3 * seconds * rate + 2 * n, (calls, seconds)


async def test_rate_limited_postpones_without_a_try_and_pauses_the_task(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    """A task raising RateLimited(retry_after=0.6) is handed back without
    spending a try or recording an error, and no job of that task starts
    until the pause is over; another task of the queue runs meanwhile."""
    app = make_app(queue=queue_name)
    starts: list[tuple[str, float]] = []

    @app.task(name="call_api", max_tries=1)
    async def call_api(n: int) -> int:
        starts.append((f"call_api{n}", time.monotonic()))
        if n == 0 and len(starts) == 1:
            raise RateLimited(retry_after=0.6)
        return n

    @app.task(name="other")
    async def other() -> str:
        starts.append(("other", time.monotonic()))
        return "free"

    async with app:
        first, second = await call_api.enqueue(0), await call_api.enqueue(1)
        free = await other.enqueue()
        async with running(app, concurrency=1):
            assert await first.result(timeout=20) == 0
            assert await second.result(timeout=20) == 1
            assert await free.result(timeout=20) == "free"
        info = await first.info()
    assert info.attempt == 1 and info.errors == [] and info.deliveries == 2
    assert [name for name, _ in starts] == ["call_api0", "other", "call_api0", "call_api1"]
    raised_at = starts[0][1]
    assert starts[1][1] - raised_at < 0.6
    assert all(at - raised_at >= 0.58 for _, at in starts[2:])


async def test_operator_override_applies_at_runtime_and_clears_back(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    """A task limited to 1 per minute in code: one job runs, the rest are
    held back (still queued); an operator's override to 100/s lets them run
    at once on the running workers; clearing it restores the declared limit."""
    app = make_app(queue=queue_name)

    @app.task(name="slow_api")
    async def slow_api(n: int) -> int:
        return n

    async with app:
        flow = _flow(app)
        await flow.declare(queue_name, {"slow_api": RateLimit(1, 60.0)})
        jobs = [await slow_api.enqueue(i) for i in range(4)]
        async with running(app, concurrency=4):
            assert await jobs[0].result(timeout=10) == 0
            with anyio.fail_after(10):
                while (await flow.limits(queue_name))[0].held < 3:
                    await anyio.sleep(0.05)
            [row] = await flow.limits(queue_name)
            assert (row.task, row.declared, row.effective) == (
                "slow_api", RateLimit(1, 60.0), RateLimit(1, 60.0))
            assert row.tokens == 0 and 50_000 < row.next_start_ms <= 60_000
            assert [await j.status() for j in jobs[1:]] == [aioqueue.JobStatus.QUEUED] * 3
            await flow.set_override(queue_name, "slow_api", RateLimit(100, 1.0))
            assert [await j.result(timeout=10) for j in jobs[1:]] == [1, 2, 3]
            await flow.clear_override(queue_name, "slow_api")
            [row] = await flow.limits(queue_name)
            assert row.override is None and row.effective == RateLimit(1, 60.0)
            assert row.held == 0


async def test_held_job_cancelled_while_held_never_runs(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)
    ran: list[int] = []

    @app.task(name="limited")
    async def limited(n: int) -> int:
        ran.append(n)
        return n

    async with app:
        flow = _flow(app)
        await flow.declare(queue_name, {"limited": RateLimit(1, 60.0)})
        first, second, third = [await limited.enqueue(i) for i in range(3)]
        async with running(app, concurrency=2):
            assert await first.result(timeout=10) == 0
            with anyio.fail_after(10):
                while (await flow.limits(queue_name))[0].held < 2:
                    await anyio.sleep(0.05)
            await second.cancel()
            await flow.set_override(queue_name, "limited", None)  # limiting off
            assert await third.result(timeout=10) == 2
        assert await second.status() == aioqueue.JobStatus.CANCELLED
    assert ran == [0, 2]


async def test_queue_wide_limit_covers_every_task_of_the_queue(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)

    @app.task(name="a")
    async def a() -> None:
        return None

    @app.task(name="b")
    async def b() -> None:
        return None

    async with app:
        flow = _flow(app)
        await flow.declare(queue_name, {None: RateLimit(10, 1.0, 2)})
        jobs = [await (a if i % 2 else b).enqueue() for i in range(12)]
        async with running(app, concurrency=10):
            for job in jobs:
                await job.result(timeout=20)
        starts = _start_times(app.url, app.prefix, queue_name, [j.id for j in jobs])
    # a burst of 2, then one every 100 ms
    assert starts[-1] - starts[0] >= 100 * (len(jobs) - 2) - 5


async def test_key_space_stays_consistent_with_held_jobs(
        make_app: Callable[..., aioqueue.App], queue_name: str, redis_url: str) -> None:
    """The checker's fsck knows held jobs (queued, in a held list) and the
    flow keys; a claim that holds jobs back leaves a consistent key space,
    and so does cancelling a held job."""
    app = make_app(queue=queue_name)

    @app.task(name="limited")
    async def limited(n: int) -> int:
        return n

    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        await _flow(app).declare(queue_name, {"limited": RateLimit(1, 3600.0)})
        jobs = [await limited.enqueue(i) for i in range(5)]
        async with app.broker.blocking_client("t") as lane:
            claimed, next_due_ms = await app.broker.claim(lane, queue_name, 5, 600_000, "w1")
        assert [j.id for j in claimed] == [jobs[0].id]
        assert 3_500_000 < next_due_ms <= 3_600_000  # the next start, not a poll
        snap = await snapshot(raw, app.prefix, queue_name)
        assert snap.held == {"limited": [j.id for j in jobs[1:]]}
        assert fsck(snap) == []
        # held jobs are waiting jobs to everyone who counts (queue_info, burst mode)
        assert (await app.queue_info(queue_name))["waiting"] == 4
        await jobs[2].cancel()
        assert fsck(await snapshot(raw, app.prefix, queue_name)) == []
        assert (await _flow(app).limits(queue_name))[0].held == 4  # the leftover, until reached
    await raw.aclose()


async def test_limits_declared_in_code_are_stored_when_the_app_opens(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    """``@app.task(rate_limit=)`` and ``app.limit_queue`` are written to Redis
    by ``App.open``; an app whose code no longer declares them removes them,
    and an operator's override survives both."""
    def build(limited: bool) -> aioqueue.App:
        app = make_app(queue=queue_name)

        @app.task(name="api", rate_limit="5/s" if limited else None)
        async def api() -> None:
            return None

        if limited:
            app.limit_queue(queue_name, aioqueue.RateLimit(100, 60.0, burst=10))
        return app

    async with build(limited=True) as app:
        rows = {r.task: r for r in await _flow(app).limits(queue_name)}
        assert rows["api"].declared == RateLimit(5, 1.0)
        assert rows[None].declared == RateLimit(100, 60.0, 10)
        await _flow(app).set_override(queue_name, None, RateLimit(1, 1.0))
    async with build(limited=False) as app:
        rows = {r.task: r for r in await _flow(app).limits(queue_name)}
        assert "api" not in rows
        assert rows[None].declared is None and rows[None].effective == RateLimit(1, 1.0)
    with pytest.raises(aioqueue.ConfigurationError):
        build(limited=False).task(name="bad", rate_limit="fast")(lambda: None)


async def test_damaged_flow_keys_never_make_a_claim_fail_half_way(
        make_app: Callable[..., aioqueue.App], queue_name: str, redis_url: str) -> None:
    """A held list that is not a list, a stored limit that is not one and a
    TAT that is not a number (written by something else): the claim still
    leases the jobs (a damaged held list cannot hold them; counted), never
    fails after its first write."""
    app = make_app(queue=queue_name)

    @app.task(name="limited")
    async def limited(n: int) -> int:
        return n

    base = f"{app.prefix}:{{{queue_name}}}:"
    with redis.Redis.from_url(redis_url) as client:
        client.set(base + "held:limited", "not a list")
        client.hset(base + "limits", mapping={"t:limited": "1 3600000 1", "t:other": "x y z"})
        client.hset(base + "limiter", "t:other", "soon")
    async with app:
        jobs = [await limited.enqueue(i) for i in range(3)]
        async with app.broker.blocking_client("t") as lane:
            claimed, _ = await app.broker.claim(lane, queue_name, 3, 600_000, "w1")
        assert sorted(j.id for j in claimed) == sorted(j.id for j in jobs)
        assert (await app.broker.stats(queue_name)).get("malformed_held", 0) >= 2


async def test_rate_limited_in_eager_mode_retries_like_retry_instead_of_looping() -> None:
    """Eager mode has no limiter to pause and waits for nothing: a task that
    keeps raising RateLimited must end (as a Retry would: tries spent, then
    dead-lettered), not be handed back and run again forever."""
    from aioqueue.testing import eager

    app = aioqueue.App("redis://127.0.0.1:1/0", queue="eager")
    calls: list[int] = []

    @app.task(name="always_429", max_tries=3)
    async def always_429() -> None:
        calls.append(1)
        raise RateLimited(retry_after=5)

    with anyio.fail_after(10):
        async with eager(app):
            job = await always_429.enqueue()
            assert await job.status() == aioqueue.JobStatus.FAILED
    assert len(calls) == 3
