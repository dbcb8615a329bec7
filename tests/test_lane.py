"""The command lane: a cancelled wait is a cancellation (never another error),
and a closed lane refuses calls with a typed error."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

import anyio
import pytest
from redis.asyncio import ConnectionPool

import aioqueue
from aioqueue.lane import CommandLane

from .conftest import running


def make_lane(url: str, size: int) -> CommandLane:
    pool = ConnectionPool.from_url(url, decode_responses=True)
    return CommandLane(pool.make_connection, size=size, timeout_s=5.0, retries=1)


async def test_cancelled_waits_for_a_lane_slot_raise_cancelled_error(redis_url: str) -> None:
    # Given a lane of 4 connections and 10,000 callers that give up after a
    # random moment, most of them while waiting for a slot
    lane = make_lane(redis_url, size=4)
    outcomes: Counter[str] = Counter()
    rng = random.Random(7)

    async def caller(deadline_s: float) -> None:
        try:
            async with asyncio.timeout(deadline_s):
                await lane.execute("PING")
            outcomes["done"] += 1
        except TimeoutError:  # asyncio.timeout turns our cancellation into this
            outcomes["cancelled"] += 1
        except Exception as exc:
            outcomes[type(exc).__name__] += 1

    try:
        async with anyio.create_task_group() as tg:  # open the 4 connections first
            for _ in range(4):
                tg.start_soon(lane.execute, "PING")
        async with anyio.create_task_group() as tg:
            for _ in range(10_000):
                tg.start_soon(caller, rng.uniform(0, 0.2))
    finally:
        await lane.close()
    # Then every caller either got its reply or saw its own cancellation
    assert set(outcomes) <= {"done", "cancelled"}, outcomes
    assert outcomes["cancelled"] > 0 and outcomes["done"] > 0, outcomes


async def test_enqueue_under_a_request_deadline_never_records_another_error(
    make_app: Callable[..., aioqueue.App],
) -> None:
    # Given an app with a small pool and 3,000 requests, each enqueueing under
    # a deadline of a few milliseconds (a web request's budget)
    app = make_app(max_connections=2)

    @app.task
    async def noop(x: int) -> int:
        return x

    errors: Counter[str] = Counter()
    written: list[str] = []
    rng = random.Random(11)

    async def request(n: int, deadline_s: float) -> None:
        with anyio.move_on_after(deadline_s):
            try:
                written.append((await noop.options(job_id=f"r{n}").enqueue(n)).id)
            except Exception as exc:
                errors[type(exc).__name__] += 1

    async with app:
        async with anyio.create_task_group() as tg:
            for n in range(3_000):
                tg.start_soon(request, n, rng.uniform(0, 0.03))
        # Then a deadline only ever cancels: no other error reaches the caller
        assert not errors, errors
        # and the jobs that were enqueued run
        async with running(app):
            for job_id in written[:20]:
                assert await app.job(job_id).result(timeout=20) == int(job_id[1:])


async def test_closed_lane_refuses_calls_with_redis_unavailable(redis_url: str) -> None:
    lane = make_lane(redis_url, size=2)
    assert await lane.execute("PING") in ("PONG", True)
    await lane.close()
    assert lane.closed
    with pytest.raises(aioqueue.RedisUnavailable, match="closed"):
        await lane.execute("PING")


def test_pack_sends_an_int_enum_as_its_number() -> None:
    """The packer takes the exact types first; a subclass of int (an
    IntEnum, say) is still sent as its number, not as its repr."""
    import enum

    from aioqueue.lane import pack

    class Level(enum.IntEnum):
        HIGH = 7

    assert pack(["X", Level.HIGH, 1.5, b"b", "é"]) == (
        b"*5\r\n$1\r\nX\r\n$1\r\n7\r\n$3\r\n1.5\r\n$1\r\nb\r\n$2\r\n\xc3\xa9\r\n")
