"""One options object: typed and by-name enqueue store the same job, a task's
defaults apply unless an option is given, and ``None`` is a value (not "unset")."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import anyio
import pytest

import aioqueue
from aioqueue.options import EnqueueKwargs

from .conftest import running


def _defaults_app(make_app: Callable[..., aioqueue.App]) -> aioqueue.App:
    app = make_app()

    @app.task(name="shaped", queue="special", priority=50, max_tries=3, timeout=30, result_ttl=600,
              max_deliveries=4)
    async def shaped(x: int) -> int:
        return x

    return app


def _comparable(record: dict[str, str]) -> dict[str, str]:
    """A stored record without what differs between two enqueues of one call."""
    return {k: v for k, v in record.items() if k not in ("et",)}


async def test_enqueue_by_name_uses_the_registered_task_defaults(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = _defaults_app(make_app)
    async with app:
        # Given a task registered with its own queue and priority,
        # when it is enqueued by name without options
        job = await app.enqueue("shaped", 1)
        # Then it lands in the task's queue with the task's priority
        assert job.queue == "special"
        info = await job.info()
        assert info.priority == 50
        # and the stored job is the one a typed enqueue stores
        typed = await app.get_task("shaped").options(job_id="typed").enqueue(1)
        by_name = await app.enqueue_with("shaped", (1,), job_id="by-name")
        assert _comparable(await app.broker.job_record("special", typed.id)) == \
            _comparable(await app.broker.job_record("special", by_name.id))


async def test_enqueue_with_options_override_the_task_defaults(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = _defaults_app(make_app)
    async with app:
        job = await app.enqueue_with("shaped", (1,), priority=-3, queue="other")
        assert job.queue == "other"
        assert (await job.info()).priority == -3
        typed = await app.get_task("shaped").options(
            priority=-3, queue="other", job_id="t").enqueue(1)
        by_name = await app.enqueue_with("shaped", (1,), priority=-3, queue="other",
                                         job_id="n")
        assert _comparable(await app.broker.job_record("other", typed.id)) == \
            _comparable(await app.broker.job_record("other", by_name.id))


async def test_options_timeout_none_clears_the_task_timeout(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task(name="slow", timeout=0.05)
    async def slow() -> str:
        await anyio.sleep(0.3)
        return "done"

    async with app, running(app):
        # Given a task whose own timeout is shorter than its run,
        # when one call clears the timeout
        job = await slow.options(timeout=None).enqueue()
        # Then that job runs to the end
        assert await job.result(timeout=30) == "done"
        # while a call without the option still times out
        with pytest.raises(aioqueue.JobFailed) as failed:
            await (await slow.enqueue()).result(timeout=30)
        assert failed.value.error_type == "TimeoutError"


async def test_enqueue_with_timeout_none_clears_the_task_timeout(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task(name="slow", timeout=0.05)
    async def slow() -> str:
        await anyio.sleep(0.3)
        return "done"

    async with app, running(app):
        job = await app.enqueue_with("slow", timeout=None)
        assert await job.result(timeout=30) == "done"


def test_later_options_replace_earlier_ones(make_app: Callable[..., aioqueue.App]) -> None:
    app = _defaults_app(make_app)
    task = app.get_task("shaped")
    # a later delay replaces an earlier at (and the other way round), not an error
    later = task.options(delay=5).options(priority=1).options(timeout=None)
    assert later.call_options.delay == 5
    assert later.call_options.priority == 1
    assert later.call_options.timeout is None
    assert task.call_options.priority is aioqueue.UNSET


def test_keyword_options_are_the_options_object_fields() -> None:
    # task.options(**kw) / app.enqueue_with(..., **kw) take exactly EnqueueOptions' fields
    fields = {f.name for f in dataclasses.fields(aioqueue.EnqueueOptions)}
    assert set(EnqueueKwargs.__annotations__) == fields


def test_per_call_max_deliveries_is_stored(make_app: Callable[..., aioqueue.App]) -> None:
    app = _defaults_app(make_app)
    task = app.get_task("shaped").options(max_deliveries=9, timeout=None)
    assert task.prepare((1,), {}).fields == {"md": 9, "rt": 600_000, "to": 0}


async def test_none_means_the_default_for_queue_priority_and_max_tries(
        make_app: Callable[..., aioqueue.App]) -> None:
    # an optional CLI flag left out arrives as None: it must not override the task
    app = _defaults_app(make_app)
    async with app:
        job = await app.enqueue_with("shaped", (1,), queue=None, priority=None,
                                     max_tries=None)
        assert job.queue == "special"
        assert (await job.info()).priority == 50
