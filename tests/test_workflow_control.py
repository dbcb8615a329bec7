"""Workflow control: cancelling a workflow is one step that ends it
cancelled; members keep their task's settings; a large group never blocks
the server."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
import redis.asyncio as aioredis

import aioqueue
from aioqueue.record import Field

from .conftest import running


async def wait_active(job: aioqueue.Job) -> None:  # type: ignore[type-arg]
    with anyio.fail_after(10):
        while await job.status() is not aioqueue.JobStatus.ACTIVE:
            await anyio.sleep(0.02)


async def test_cancelling_a_chord_that_continues_on_error_ends_it_cancelled(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    callbacks: list[list[object]] = []

    @app.task(name="member")
    async def member(ctx: aioqueue.JobContext, pause: float) -> int:
        await anyio.sleep(pause)
        return 1

    @app.task(name="total")
    async def total(ctx: aioqueue.JobContext, values: list[object]) -> int:
        callbacks.append(values)
        return len(values)

    async with app, running(app):
        wf = await aioqueue.chord(
            aioqueue.group([member.s(30.0), member.s(0.0)], continue_on_error=True),
            total.s()).enqueue()
        slow, quick = await wf.members()
        await wait_active(slow)
        assert await quick.result(timeout=10) == 1
        assert await wf.cancel("stop it") is True
        assert await wf.status() is aioqueue.JobStatus.CANCELLED
        with pytest.raises(aioqueue.JobCancelled):
            await wf.result(timeout=5)
        with pytest.raises(aioqueue.JobCancelled):
            await slow.result(timeout=10)  # its worker cancelled it
        assert len(await wf.members()) == 2  # no callback was created
        assert await wf.cancel() is False  # already ended
    assert callbacks == []


async def test_cancelling_a_group_that_continues_on_error_ends_it_cancelled(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task(name="member")
    async def member(ctx: aioqueue.JobContext, pause: float) -> int:
        await anyio.sleep(pause)
        return 1

    async with app:
        wf = await aioqueue.group([member.s(30.0), member.s(30.0)],
                                  continue_on_error=True).enqueue()
        # nothing runs yet: both members are waiting, and end cancelled at once
        assert await wf.cancel() is True
        assert await wf.status() is aioqueue.JobStatus.CANCELLED
        for job in await wf.members():
            assert await job.status() is aioqueue.JobStatus.CANCELLED
        async with running(app):
            with pytest.raises(aioqueue.JobCancelled):
                await wf.result(timeout=5)


async def test_workflow_members_keep_their_tasks_priority_and_settings(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task(name="first")
    async def first(ctx: aioqueue.JobContext) -> int:
        return 1

    @app.task(name="urgent", priority=7, max_deliveries=2, result_ttl=120.0)
    async def urgent(ctx: aioqueue.JobContext, x: int) -> int:
        return x + 1

    async with app:
        broker, q = app.broker, app.default_queue
        group = await aioqueue.group([urgent.s(1)]).enqueue()
        (member,) = await group.members()
        chain = await aioqueue.chain(first.s(), urgent.s()).enqueue()
        async with running(app):
            assert await chain.result(timeout=30) == 2
            await group.result(timeout=30)
        step = (await chain.members())[1]
        for job in (member, step):
            rec = await broker.job_record(q, job.id)
            assert rec[Field.PRIORITY] == "7"
            assert rec[Field.MAX_DELIVERIES] == "2"
            assert rec[Field.RESULT_TTL] == "120000"


async def test_creating_a_100k_member_group_never_blocks_the_server(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = make_app()

    @app.task(name="tiny")
    async def tiny(ctx: aioqueue.JobContext, i: int) -> int:
        return i

    async with app, aioredis.Redis.from_url(redis_url) as admin:
        await admin.config_set("slowlog-log-slower-than", 250_000)  # µs
        await admin.slowlog_reset()
        wf = await aioqueue.group(tiny.s(i) for i in range(100_000)).enqueue()
        slow = await admin.slowlog_get(10)
        await admin.config_set("slowlog-log-slower-than", 10_000)
        assert slow == [], f"a call blocked the server for {slow[0]['duration'] / 1000} ms"
        assert len(await wf.members()) == 100_000
        assert (await app.broker.counts(app.default_queue))["waiting"] == 100_000
