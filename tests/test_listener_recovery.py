"""The result listener after an outage: Redis back means result() works,
whatever the listener's backoff still had to run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import anyio

import aioqueue
from aioqueue.server import ServerProcess

from .conftest import FAST, running


async def test_result_works_once_redis_is_back_although_the_listener_backs_off(
    own_server: ServerProcess, make_app: Callable[..., aioqueue.App]
) -> None:
    # Given an app whose result listener backs off for long between attempts
    # (a long cap makes the backoff outlast the outage: the bug's window)
    slow_reconnect = dataclasses.replace(FAST, reconnect_cap_s=60.0)
    app = make_app(own_server.url, worker=slow_reconnect)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    async with app, running(app):
        assert await (await double.enqueue(1)).result(timeout=10) == 2

        # When Redis is stopped until the listener has failed several
        # attempts (its backoff grows), then started again
        await anyio.to_thread.run_sync(own_server.kill)
        listener = app.results
        with anyio.fail_after(30):
            while listener.down is None:
                await anyio.sleep(0.05)
        await anyio.sleep(1.0)  # a few more failed attempts: a longer backoff
        await anyio.to_thread.run_sync(own_server.start)

        # Then a job enqueued now is awaited normally: no RedisUnavailable
        # from a listener that merely had not tried again yet
        job = await double.enqueue(2)
        assert await job.result(timeout=10) == 4
