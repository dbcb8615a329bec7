"""Arguments are validated against the task's signature on both sides."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pydantic
import pytest
import redis.asyncio as aioredis

import aioqueue

from .conftest import running


class Point(pydantic.BaseModel):
    x: float
    y: float


async def _key_count(url: str) -> int:
    async with aioredis.Redis.from_url(url) as r:
        return int(await r.dbsize())


async def test_enqueue_rejects_bad_arguments_and_writes_nothing(
    make_app: Callable[..., aioqueue.App], redis_url: str
) -> None:
    app = make_app()

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        before = await _key_count(redis_url)
        with pytest.raises(pydantic.ValidationError):
            await add.enqueue("a", 2)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await add.enqueue(1, 2, 3)  # type: ignore[call-arg]
        with pytest.raises(pydantic.ValidationError):
            await add.enqueue(1)  # type: ignore[call-arg]
        assert await _key_count(redis_url) == before


async def test_bad_stored_payload_is_dead_lettered_and_worker_goes_on(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task(max_tries=3)
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        # Given a job whose stored arguments no longer fit the signature
        keys = app.broker.keys(app.default_queue)
        bad = await app.enqueue_with("placeholder", ())
        await app.broker.client.hset(keys.job(bad.id), mapping={  # type: ignore[misc]
            "t": add.name, "a": json.dumps({"x": "not a number", "y": 2})})
        good = await add.enqueue(2, 3)
        # When a worker runs them
        async with running(app):
            # Then the bad one is dead with a clear reason, not retried
            with pytest.raises(aioqueue.JobFailed) as failed:
                await bad.result(timeout=10)
            assert failed.value.error_type == "InvalidPayload"
            assert "x" in failed.value.error_message
            info = await bad.info()
            assert info.deliveries == 1
            # and the worker keeps going
            assert await good.result(timeout=10) == 5
            assert await app.broker.client.zscore(keys.dead, bad.id) is not None


async def test_unknown_task_is_dead_lettered_not_retried(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    async with app, running(app):
        job = await app.enqueue("nobody.registered.this", 1, 2)
        with pytest.raises(aioqueue.JobFailed) as failed:
            await job.result(timeout=10)
        assert failed.value.error_type == "TaskNotFound"
        assert (await job.info()).deliveries == 1


async def test_enqueue_by_name_is_validated_at_execution(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task(name="mul")
    async def mul(x: int, y: int = 10) -> int:
        return x * y

    producer = make_app()  # a producer that does not know the task
    async with app, producer, running(app):
        assert await (await producer.enqueue("mul", 3)).result(timeout=10) == 30
        assert await (await producer.enqueue("mul", 3, y=2)).result(timeout=10) == 6
        wrong = await producer.enqueue("mul", "three")
        with pytest.raises(aioqueue.JobFailed) as failed:
            await wrong.result(timeout=10)
        assert failed.value.error_type == "InvalidPayload"


async def test_return_value_validated_against_annotation(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task
    async def liar() -> int:
        return "not an int"  # type: ignore[return-value]

    async with app, running(app):
        with pytest.raises(aioqueue.JobFailed) as failed:
            await (await liar.enqueue()).result(timeout=10)
        assert failed.value.error_type == "InvalidResult"


async def test_rich_types_round_trip(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task
    async def shift(p: Point, when: dt.datetime, tags: list[str]) -> Point:
        assert isinstance(when, dt.datetime)
        return Point(x=p.x + len(tags), y=p.y)

    async with app, running(app):
        job = await shift.enqueue(Point(x=1, y=2), dt.datetime(2026, 1, 1), ["a", "b"])
        assert await job.result(timeout=10) == Point(x=3, y=2)


async def test_payload_over_limit_is_refused_before_any_write(
    make_app: Callable[..., aioqueue.App], redis_url: str
) -> None:
    app = make_app(max_payload_bytes=1000)

    @app.task
    async def echo(text: str) -> str:
        return text

    async with app:
        before = await _key_count(redis_url)
        with pytest.raises(aioqueue.PayloadTooLarge):
            await echo.enqueue("x" * 2000)
        assert await _key_count(redis_url) == before


async def test_invalid_options_refused(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task
    async def noop() -> None:
        return None

    with pytest.raises(aioqueue.ConfigurationError):
        noop.options(delay=-1)
    with pytest.raises(aioqueue.ConfigurationError):
        noop.options(priority=1000)
    with pytest.raises(aioqueue.ConfigurationError):
        noop.options(job_id="has space")
    with pytest.raises(aioqueue.ConfigurationError):
        noop.options(queue="{bad}")
    with pytest.raises(aioqueue.ConfigurationError):

        @app.task(name=noop.name)
        async def same_name() -> None:
            return None
