"""A job's failure is never the worker's failure: whatever a task raises,
returns or asks for, only that job fails (or retries); the worker and the
other jobs it runs go on."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import aioqueue

from .conftest import running
from .helpers import wait_until


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")


async def _only_that_job_fails(
    app: aioqueue.App, bad: aioqueue.Task[[], Any], caplog: pytest.LogCaptureFixture,
) -> aioqueue.JobFailed:
    """Run ``bad`` next to a bystander job in one worker: ``bad`` must end
    failed, the bystander must finish, the worker must keep running."""
    gate = anyio.Event()

    @app.task(name="bystander")
    async def bystander() -> str:
        await gate.wait()
        return "fine"

    caplog.set_level(logging.INFO, logger="aioqueue")
    async with app, running(app) as sup:
        other = await bystander.enqueue()
        await wait_until(lambda: sup.running_jobs == 1, 10, what="bystander running")
        job = await bad.enqueue()
        with pytest.raises(aioqueue.JobFailed) as failed:
            await job.result(timeout=10)
        gate.set()
        assert await other.result(timeout=10) == "fine"
        # the worker is still alive: it runs the next job too
        again = await bystander.enqueue()
        assert await again.result(timeout=10) == "fine"
    assert job.id in caplog.text
    return failed.value


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit])
async def test_task_raising_system_exit_fails_only_that_job(
    make_app: Callable[..., aioqueue.App], caplog: pytest.LogCaptureFixture,
    exc_type: type[BaseException],
) -> None:
    app = make_app()

    @app.task(max_tries=1)
    async def leaves() -> None:
        raise exc_type("bye")

    failed = await _only_that_job_fails(app, leaves, caplog)
    assert failed.error_type == exc_type.__qualname__
    assert failed.attempts == 1


async def test_sync_task_raising_system_exit_fails_only_that_job(
    make_app: Callable[..., aioqueue.App], caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()

    @app.task(max_tries=1)
    def leaves() -> None:
        raise SystemExit(3)

    failed = await _only_that_job_fails(app, leaves, caplog)
    assert failed.error_type == "SystemExit"


async def test_task_raising_cancelled_error_by_itself_fails_only_that_job(
    make_app: Callable[..., aioqueue.App], caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()

    @app.task(max_tries=1)
    async def confused() -> None:
        raise anyio.get_cancelled_exc_class()()

    failed = await _only_that_job_fails(app, confused, caplog)
    assert failed.error_type == "CancelledError"


@pytest.mark.parametrize("delay", [math.nan, math.inf, -math.inf, -1.0, 1e300])
async def test_retry_with_invalid_delay_fails_only_that_job(
    make_app: Callable[..., aioqueue.App], caplog: pytest.LogCaptureFixture, delay: float,
) -> None:
    app = make_app()

    @app.task(max_tries=3)
    async def odd() -> None:
        raise aioqueue.Retry(delay=delay)

    failed = await _only_that_job_fails(app, odd, caplog)
    assert failed.error_type == "InvalidRetryDelay"
    assert "Retry(delay=" in failed.error_message


def _policy_returning_inf(n: int, exc: BaseException | None) -> float:
    return math.inf


def _policy_raising(n: int, exc: BaseException | None) -> float:
    raise ZeroDivisionError("policy bug")


def _policy_returning_text(n: int, exc: BaseException | None) -> float:
    return "soon"  # type: ignore[return-value]


@pytest.mark.parametrize("policy", [_policy_returning_inf, _policy_raising,
                                    _policy_returning_text])
async def test_broken_retry_policy_fails_only_that_job(
    make_app: Callable[..., aioqueue.App], caplog: pytest.LogCaptureFixture,
    policy: Callable[[int, BaseException | None], float],
) -> None:
    app = make_app()

    @app.task(max_tries=3, retry=aioqueue.RetryPolicy(custom=policy))
    async def flaky() -> None:
        raise RuntimeError("the real failure")

    failed = await _only_that_job_fails(app, flaky, caplog)
    assert failed.error_type == "RetryPolicyError"
    # the job's own error is kept in the reason
    assert "RuntimeError: the real failure" in failed.error_message
    assert failed.attempts == 1


async def test_exception_whose_str_raises_fails_only_that_job(
    make_app: Callable[..., aioqueue.App], caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()

    @app.task(max_tries=1)
    async def unprintable() -> None:
        raise UnprintableError()

    failed = await _only_that_job_fails(app, unprintable, caplog)
    assert failed.error_type == "UnprintableError"
    assert "str() failed" in failed.error_message


async def test_middleware_raising_system_exit_fails_only_that_job(
    make_app: Callable[..., aioqueue.App], caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()

    @app.middleware
    async def strict(ctx: aioqueue.JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        if ctx.task_name == "guarded":
            raise SystemExit("middleware says no")
        return await call_next()

    @app.task(name="guarded", max_tries=1)
    async def guarded() -> None:
        return None

    failed = await _only_that_job_fails(app, guarded, caplog)
    assert failed.error_type == "SystemExit"


async def test_huge_error_text_is_stored_cut_not_whole(
    make_app: Callable[..., aioqueue.App], caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()

    @app.task(max_tries=1)
    async def verbose() -> None:
        raise ValueError("x" * 20_000_000)

    failed = await _only_that_job_fails(app, verbose, caplog)
    assert failed.error_type == "ValueError"
    assert len(failed.error_message) < 10_000 and "characters cut" in failed.error_message
    assert len(failed.traceback) < 70_000
