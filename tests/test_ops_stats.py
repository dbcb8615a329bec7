"""Per-minute throughput and latency counters (issue 11), written by the
settle and reap scripts themselves."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

import aioqueue
from aioqueue.broker_stats import recent_minutes

from .conftest import running
from .helpers import wait_until


def _totals(rows: list[aioqueue.broker_stats.MinuteStats]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        for name, n in row.counts.items():
            out[name] = out.get(name, 0) + n
    out["run_n"] = sum(r.run_n for r in rows)
    out["wait_n"] = sum(r.wait_n for r in rows)
    return out


async def test_settles_and_expired_leases_count_per_minute(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(max_tries=2)
    async def boom() -> None:
        raise ValueError("no")

    async with app:
        # a lease that runs out: claimed by a worker that never comes back
        lost = await add.enqueue(0, 0)
        claimed, _ = await app.broker.claim(app.broker.lane, queue_name, 1, 1, "gone")
        assert [j.id for j in claimed] == [lost.id]

        async def reaped() -> bool:
            requeued, _ = await app.broker.reap(queue_name, limit=10, max_deliveries=5,
                                                dead_letter_ttl_ms=60_000)
            return requeued == 1

        await wait_until(reaped, 10, what="the expired lease reaped")
        jobs = [await add.enqueue(n, n) for n in range(3)]
        failing = await boom.enqueue()
        async with running(app):
            for job in [lost, *jobs]:
                await job.result(timeout=10)
            with pytest.raises(aioqueue.JobFailed):
                await failing.result(timeout=10)
        stats = await recent_minutes(app.broker.lane, app.prefix, [queue_name], minutes=5)
    rows = stats[queue_name]
    assert len(rows) == 5 and rows[-1].minute_ms > rows[0].minute_ms
    totals = _totals(rows)
    assert totals["succeeded"] == 4 and totals["failed"] == 1 and totals["retried"] == 1
    assert totals["expired"] == 1
    assert totals["run_n"] == 6  # every settled attempt: 4 ok, 2 of boom
    assert totals["wait_n"] >= 4  # first attempts (the lost one's first start was the claim)
    busy = [r for r in rows if r.run_n]
    assert all(r.run_mean_s is not None and 0 <= r.run_mean_s <= r.run_max_s for r in busy)


async def test_minute_counters_never_fail_a_settle_on_a_foreign_key(
        make_app: Callable[..., aioqueue.App], queue_name: str, redis_url: str) -> None:
    app = make_app(queue=queue_name)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        sec, _ = await app.broker.lane.execute("TIME")
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        base = app.broker.keys(queue_name).base
        for minute in range(int(sec) // 60, int(sec) // 60 + 3):
            await client.set(f"{base}m:{minute}", "not a hash")
        await client.aclose()
        job = await add.enqueue(1, 1)
        async with running(app):
            assert await job.result(timeout=10) == 2
