"""What a producer is promised: due times in its own clock, a payload limit in
bytes, results that can always be read back, and job ids that name one task."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest

import aioqueue
from aioqueue.record import Field

from .conftest import running


class Summary(pydantic.BaseModel):
    mean: float


@pytest.fixture
def tokyo_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time is Tokyo's (UTC+9, no DST)."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def test_naive_at_is_local_time(make_app: Callable[..., aioqueue.App],
                                      tokyo_time: None) -> None:
    app = make_app()

    @app.task
    async def later() -> None:
        return None

    async with app:
        # Given a producer in Tokyo, when it asks for 09:00 on a day without a zone
        job = await later.options(at=dt.datetime(2030, 1, 2, 9, 0)).enqueue()
        # Then the job is due at 09:00 Tokyo time, which is 00:00 UTC
        (due,) = await app.broker.job_fields(job.queue, job.id, Field.DUE)
        expected = dt.datetime(2030, 1, 2, 0, 0, tzinfo=dt.UTC)
        assert due is not None and int(due) == int(expected.timestamp() * 1000)


async def test_aware_at_keeps_its_zone(make_app: Callable[..., aioqueue.App],
                                       tokyo_time: None) -> None:
    app = make_app()

    @app.task
    async def later() -> None:
        return None

    async with app:
        at = dt.datetime(2030, 1, 2, 9, 0, tzinfo=dt.UTC)
        job = await later.options(at=at).enqueue()
        (due,) = await app.broker.job_fields(job.queue, job.id, Field.DUE)
        assert due is not None and int(due) == int(at.timestamp() * 1000)


async def test_payload_limit_counts_bytes_not_characters(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app(max_payload_bytes=100)

    @app.task(name="echo")
    async def echo(text: str) -> str:
        return text

    async with app:
        before = await app.broker.client.dbsize()
        # 60 characters, 120 bytes in UTF-8: over a 100-byte limit
        with pytest.raises(aioqueue.PayloadTooLarge, match="bytes"):
            await echo.enqueue("é" * 60)
        with pytest.raises(aioqueue.PayloadTooLarge):
            await app.enqueue_with("someone.elses.task", ("é" * 60,))
        assert await app.broker.client.dbsize() == before
        # while 60 ASCII characters fit
        await echo.enqueue("e" * 60)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_task_returning_non_finite_float_fails_with_invalid_result(
        value: float, make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task
    async def ratio() -> float:
        return value

    async with app, running(app):
        job = await ratio.enqueue()
        # the job fails on the worker, instead of succeeding with a result
        # that result() cannot read back
        with pytest.raises(aioqueue.JobFailed) as failed:
            await job.result(timeout=30)
        assert failed.value.error_type == "InvalidResult"


async def test_non_finite_float_nested_in_a_result_fails_with_invalid_result(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task
    async def stats() -> list[dict[str, float]]:
        return [{"mean": math.nan}]

    @app.task
    async def summary() -> Summary:
        return Summary(mean=math.inf)

    async with app, running(app):
        for job in (await stats.enqueue(), await summary.enqueue()):
            with pytest.raises(aioqueue.JobFailed) as failed:
                await job.result(timeout=30)
            assert failed.value.error_type == "InvalidResult"


def _nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


async def test_results_the_reader_would_refuse_fail_with_invalid_result(
        make_app: Callable[..., aioqueue.App]) -> None:
    """The worker skips reading a result back only when its annotation and
    length prove it reads back: an int of 5,000 digits and lists nested 205
    deep are written by the serialiser but refused by the JSON reader."""
    app = make_app()

    @app.task
    async def huge() -> int:
        return 10 ** 5000

    @app.task
    async def deep() -> Any:
        return _nested(205)

    @app.task
    async def long_text() -> dict[str, str]:
        return {"text": "x" * 100_000}

    async with app, running(app):
        for job in (await huge.enqueue(), await deep.enqueue()):
            with pytest.raises(aioqueue.JobFailed) as failed:
                await job.result(timeout=30)
            assert failed.value.error_type == "InvalidResult"
        # a long result of a type that always reads back is stored as it is
        assert await (await long_text.enqueue()).result(timeout=30) == {"text": "x" * 100_000}


async def test_same_job_id_for_two_different_tasks_is_a_typed_error(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task(name="charge")
    async def charge(order: int) -> int:
        return order

    @app.task(name="refund")
    async def refund(order: int) -> int:
        return order

    async with app:
        first = await charge.options(job_id="order-7").enqueue(7)
        # the same task again: idempotent, the same job
        again = await charge.options(job_id="order-7").enqueue(7)
        assert again.id == first.id
        # another task under that id: refused, naming both tasks
        with pytest.raises(aioqueue.JobIdConflict, match="charge") as conflict:
            await refund.options(job_id="order-7").enqueue(7)
        assert conflict.value.job_id == "order-7"
        with pytest.raises(aioqueue.JobIdConflict):
            await app.enqueue_with("someone.elses.task", (7,), job_id="order-7")
        assert (await first.info()).task == "charge"
