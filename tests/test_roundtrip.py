"""Enqueue -> worker -> result, the path every user takes first."""

from __future__ import annotations

from collections.abc import Callable

import aioqueue

from .conftest import running


async def test_enqueue_execute_result(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task(max_tries=3, timeout=30.0)
    async def add(x: int, y: int) -> int:
        return x + y

    async with app, running(app):
        job = await add.enqueue(1, 2)
        assert isinstance(job, aioqueue.Job)
        assert await job.result(timeout=10) == 3
        assert await job.status() is aioqueue.JobStatus.SUCCEEDED
        byname = await app.enqueue(add.name, 4, 5)
        assert await byname.result(timeout=10) == 9


async def test_task_stays_directly_awaitable(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    assert await double(21) == 42
