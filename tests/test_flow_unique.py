"""Uniqueness, debounce and throttle (#13 item 3): decided in enqueue.lua,
exact under concurrent producers, released when the job ends or the key's
TTL passes."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import anyio
import pytest

import aioqueue
from aioqueue.broker_flow import enqueue_flow
from aioqueue.flow import UniqueKey
from aioqueue.script_codes import EnqueueCode

from .conftest import running

pytestmark = pytest.mark.anyio


async def _enqueue(app: aioqueue.App, queue: str, unique: UniqueKey, n: int,
                   delay_ms: int = 0) -> tuple[EnqueueCode, str]:
    return await enqueue_flow(app.broker, queue, secrets.token_hex(8), "echo",
                              f"[[{n}],{{}}]", unique=unique, delay_ms=delay_ms)


def _app(make_app: Callable[..., aioqueue.App], queue: str) -> aioqueue.App:
    app = make_app(queue=queue)

    @app.task(name="echo")
    async def echo(n: int) -> int:
        return n

    return app


async def test_unique_key_is_exact_under_50_concurrent_producers(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    """50 producers, each on its own connection pool, enqueue with one key at
    once: one job is created, every producer gets its id."""
    apps = [_app(make_app, queue_name) for _ in range(50)]
    answers: list[tuple[EnqueueCode, str]] = []
    unique = UniqueKey("report:42")

    async def produce(app: aioqueue.App, n: int) -> None:
        async with app:
            answers.append(await _enqueue(app, queue_name, unique, n))

    async with anyio.create_task_group() as tg:
        for n, app in enumerate(apps):
            tg.start_soon(produce, app, n)
    created = [a for a in answers if a[0] is EnqueueCode.QUEUED]
    assert len(created) == 1 and len(answers) == 50
    assert {job_id for _, job_id in answers} == {created[0][1]}
    assert {code for code, _ in answers} == {EnqueueCode.QUEUED, EnqueueCode.UNIQUE_EXISTS}
    async with apps[0] as app:
        assert (await app.queue_info(queue_name))["waiting"] == 1


async def test_unique_key_is_released_when_its_job_ends_and_when_its_ttl_passes(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = _app(make_app, queue_name)
    async with app:
        code, first = await _enqueue(app, queue_name, UniqueKey("k"), 1)
        assert code is EnqueueCode.QUEUED
        async with running(app):
            assert await app.job(first, queue_name).result(timeout=10) == 1
        code, second = await _enqueue(app, queue_name, UniqueKey("k"), 2)
        assert code is EnqueueCode.QUEUED and second != first
        # cancelled: released too
        await app.job(second, queue_name).cancel()
        code, third = await _enqueue(app, queue_name, UniqueKey("k", ttl_s=0.2), 3)
        assert code is EnqueueCode.QUEUED and third not in (first, second)
        # the TTL passed while the job still waits: the key is free again
        await anyio.sleep(0.3)
        code, fourth = await _enqueue(app, queue_name, UniqueKey("k"), 4)
        assert code is EnqueueCode.QUEUED and fourth != third


async def test_debounce_replaces_the_arguments_and_pushes_back_the_start(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = _app(make_app, queue_name)
    unique = UniqueKey("doc:7", mode="debounce")
    async with app:
        code, first = await _enqueue(app, queue_name, unique, 1, delay_ms=60_000)
        assert code is EnqueueCode.SCHEDULED
        due_before = int((await app.broker.job_fields(queue_name, first, "due"))[0] or 0)
        await anyio.sleep(0.05)
        code, again = await _enqueue(app, queue_name, unique, 2, delay_ms=60_000)
        assert (code, again) == (EnqueueCode.DEBOUNCED, first)
        args, due = await app.broker.job_fields(queue_name, first, "a", "due")
        assert args == "[[2],{}]" and int(due or 0) > due_before
        code, again = await _enqueue(app, queue_name, unique, 3, delay_ms=0)
        assert (code, again) == (EnqueueCode.DEBOUNCED, first)
        assert (await app.broker.job_fields(queue_name, first, "a"))[0] == "[[3],{}]"
        assert (await app.queue_info(queue_name))["scheduled"] == 1


async def test_throttle_drops_enqueues_within_the_window_even_after_the_job_ended(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = _app(make_app, queue_name)
    async with app:
        unique = UniqueKey("ping", mode="throttle", ttl_s=0.5)
        code, first = await _enqueue(app, queue_name, unique, 1)
        assert code is EnqueueCode.QUEUED
        async with running(app):
            assert await app.job(first, queue_name).result(timeout=10) == 1
        code, dropped = await _enqueue(app, queue_name, unique, 2)
        assert (code, dropped) == (EnqueueCode.THROTTLED, first)
        await anyio.sleep(0.6)
        code, later = await _enqueue(app, queue_name, unique, 3)
        assert code is EnqueueCode.QUEUED and later != first


@pytest.mark.parametrize("kwargs", [
    {"key": ""}, {"key": "x" * 201}, {"key": "a\nb"}, {"key": "k", "mode": "once"},
    {"key": "k", "ttl_s": 0}, {"key": "k", "ttl_s": float("nan")},
])
def test_bad_unique_options_are_refused_before_anything_is_written(
        kwargs: dict[str, object]) -> None:
    with pytest.raises(aioqueue.ConfigurationError):
        UniqueKey(**kwargs)  # type: ignore[arg-type]


async def test_task_options_unique_key_returns_the_existing_jobs_handle(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    """The public path: ``task.options(unique_key=...)``. A second enqueue
    answers the first job's handle, a debounced one gets the new arguments,
    ``enqueue_many`` refuses unique keys, a mode without a key is refused."""
    app = make_app(queue=queue_name)

    @app.task(name="reindex")
    async def reindex(doc: int) -> int:
        return doc

    async with app:
        once = reindex.options(unique_key="doc-1")
        first = await once.enqueue(1)
        again = await once.enqueue(2)
        assert again.id == first.id
        debounced = reindex.options(unique_key="doc-2", unique_mode="debounce", delay=30)
        late = await debounced.enqueue(3)
        latest = await debounced.enqueue(4)
        assert latest.id == late.id
        by_name = await app.enqueue_with("reindex", (5,), unique_key="doc-1")
        assert by_name.id == first.id
        async with running(app):
            assert await first.result(timeout=10) == 1
        assert (await late.info()).task_args == {"doc": 4}
        with pytest.raises(aioqueue.ConfigurationError):
            await once.enqueue_many([once.bind(1)])
        with pytest.raises(aioqueue.ConfigurationError):
            reindex.options(unique_mode="throttle")
