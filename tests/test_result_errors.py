"""Waiting for a result: Redis down is RedisUnavailable (like every other
call), never a hang or a "did not finish"; ``timeout=0`` returns a job that
has ended."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

import aioqueue
from aioqueue.server import ServerProcess

from .conftest import running
from .helpers import wait_until


def build(make_app: Callable[..., aioqueue.App], url: str) -> tuple[aioqueue.App,
                                                                     aioqueue.Task[[int], int]]:
    app = make_app(url, socket_timeout_s=2.0)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    return app, double


async def test_result_while_redis_is_down_raises_redis_unavailable(
    own_server: ServerProcess, make_app: Callable[..., aioqueue.App],
) -> None:
    app, double = build(make_app, own_server.url)
    async with app:
        job = await double.enqueue(21)
        # Given Redis stopped before anyone waited for a result
        own_server.stop()
        # When a producer waits for the job (with and without a timeout)
        # Then it gets RedisUnavailable at once, not a hang or ResultTimeout
        with anyio.fail_after(30):
            with pytest.raises(aioqueue.RedisUnavailable):
                await job.result()
            with pytest.raises(aioqueue.RedisUnavailable):
                await job.result(timeout=20)
        # When Redis is back (AOF kept the job), waiting works again
        own_server.start()
        async with running(app):
            assert await wait_until(lambda: _result_or_none(job), 30) == 42


async def _result_or_none(job: aioqueue.Job[int]) -> int | None:
    try:
        return await job.result(timeout=5)
    except aioqueue.RedisUnavailable:
        return None  # the listener is still reconnecting


async def test_waiter_gets_redis_unavailable_when_redis_goes_down(
    own_server: ServerProcess, make_app: Callable[..., aioqueue.App],
) -> None:
    app, double = build(make_app, own_server.url)
    async with app:
        job = await double.enqueue(1)
        outcome: list[BaseException] = []

        async def wait_for_it() -> None:
            try:
                await job.result()
            except Exception as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            # Given a producer waiting for a job no worker runs
            tg.start_soon(wait_for_it)
            await wait_until(lambda: app.results.parked == 1, 30, what="a parked waiter")
            # When Redis goes down
            own_server.kill()
            # Then the waiter ends with RedisUnavailable (it does not hang)
            with anyio.fail_after(30):
                await wait_until(lambda: outcome, 30, what="the waiter's error")
        assert isinstance(outcome[0], aioqueue.RedisUnavailable), outcome


async def test_result_with_zero_timeout_returns_a_finished_job(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    async with app:
        job = await double.enqueue(4)
        async with running(app):
            assert await job.result(timeout=20) == 8
        # Given a job that has ended, When asked with timeout=0, Then its result
        assert await job.result(timeout=0) == 8
        # and an unfinished one still times out at once
        pending = await double.enqueue(5)
        with pytest.raises(aioqueue.ResultTimeout):
            await pending.result(timeout=0)
