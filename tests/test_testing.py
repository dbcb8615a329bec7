"""aioqueue.testing: what users' tests rely on, against real servers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import aioqueue
from aioqueue.testing import (
    DrainTimeout,
    advance,
    drain,
    eager,
    make_due,
    run_worker,
)

from .conftest import REPO


def _app_with_tasks(make_app: Callable[..., aioqueue.App]) -> aioqueue.App:
    app = make_app(queue="t", retry=aioqueue.RetryPolicy.fixed(60.0))

    @app.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="flaky", max_tries=3)
    async def flaky(ctx: aioqueue.JobContext, n: int) -> int:
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt}")
        return n

    @app.task(name="wrong", max_tries=2, retry_on=(ConnectionError,))
    async def wrong(x: int) -> int:
        raise KeyError(x)

    @app.task(name="bad_result")
    async def bad_result() -> int:
        return "not an int"  # type: ignore[return-value]

    @app.task(name="slow", timeout=0.05)
    async def slow() -> None:
        await anyio.sleep(5)

    @app.task(name="asks_retry", max_tries=2)
    async def asks_retry(ctx: aioqueue.JobContext) -> int:
        if ctx.attempt == 1:
            raise aioqueue.Retry(delay=30)
        return ctx.attempt

    @app.task(name="fan_out")
    async def fan_out(n: int) -> int:
        for i in range(n):
            await add.enqueue(i, i)
        return n

    return app


SCENARIOS: list[tuple[str, tuple[Any, ...]]] = [
    ("add", (1, 2)),
    ("add", ("3", 4)),            # lax validation: "3" becomes 3, on both paths
    ("flaky", (5,)),
    ("wrong", (1,)),
    ("bad_result", ()),
    ("slow", ()),
    ("asks_retry", ()),
    ("no_such_task", (1,)),
    ("fan_out", (2,)),
]


async def _outcome(app: aioqueue.App, job: aioqueue.Job[Any]) -> tuple[Any, ...]:
    info = await job.info()
    try:
        return ("ok", await job.result(), info.attempt)
    except aioqueue.JobFailed as exc:
        return ("failed", exc.error_type, exc.attempts, [e["type"] for e in info.errors])


@pytest.mark.parametrize(("task", "args"), SCENARIOS)
async def test_eager_mode_ends_jobs_as_a_worker_does(
    make_app: Callable[..., aioqueue.App], task: str, args: tuple[Any, ...]
) -> None:
    # Given the same job run by a real worker (drain) and in eager mode
    app = _app_with_tasks(make_app)
    async with app:
        job = await app.enqueue(task, *args)
        await drain(app, timeout=20)
        on_worker = await _outcome(app, job)
    async with eager(app):
        job = await app.enqueue(task, *args)
        inline = await _outcome(app, job)
    # Then both end the same way: result, error type, attempts, error history
    assert inline == on_worker


async def test_eager_mode_validates_arguments_at_enqueue(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = _app_with_tasks(make_app)
    add = app.tasks["add"]
    async with eager(app):
        with pytest.raises(Exception, match="int"):
            await add.enqueue("x", 1)
        job = await add.options(job_id="same").enqueue(1, 1)
        again = await add.options(job_id="same").enqueue(5, 5)   # idempotent by id
        assert await again.result() == await job.result() == 2
    with pytest.raises(aioqueue.ConfigurationError):
        app.broker  # noqa: B018  eager mode left the app closed


async def test_eager_mode_refuses_an_open_app(make_app: Callable[..., aioqueue.App]) -> None:
    app = _app_with_tasks(make_app)
    async with app:
        with pytest.raises(aioqueue.ConfigurationError, match="open"):
            async with eager(app):
                pass


async def test_drain_returns_outcomes_of_jobs_enqueued_by_jobs(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = _app_with_tasks(make_app)
    async with app:
        await app.enqueue("fan_out", 3)
        outcomes = await drain(app)
        assert sorted(o.task for o in outcomes) == ["add", "add", "add", "fan_out"]
        assert sorted(outcomes.of("add").results()) == [0, 2, 4]
        # a second drain reports only what ended since
        assert await drain(app) == []


async def test_drain_leaves_future_jobs_scheduled_until_time_is_advanced(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = _app_with_tasks(make_app)
    add = app.tasks["add"]
    async with app:
        later = await add.options(delay=3600).enqueue(1, 1)
        assert await drain(app) == []
        assert await later.status() is aioqueue.JobStatus.SCHEDULED
        assert await advance(app, 3599) == 1
        assert await drain(app) == []
        await advance(app, 1)
        assert (await drain(app)).results() == [2]


async def test_drain_without_skipping_retry_delays_leaves_the_retry_scheduled(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = _app_with_tasks(make_app)
    async with app:
        job = await app.enqueue("flaky", 1)
        assert await drain(app, skip_retry_delays=False) == []
        assert await job.status() is aioqueue.JobStatus.SCHEDULED
        assert await make_due(job) == 1
        await drain(app, skip_retry_delays=False)
        info = await job.info()
        assert info.status is aioqueue.JobStatus.SCHEDULED
        assert [e["attempt"] for e in info.errors] == [1, 2]


async def test_advance_wakes_a_running_worker(make_app: Callable[..., aioqueue.App]) -> None:
    app = _app_with_tasks(make_app)
    add = app.tasks["add"]
    async with app, run_worker(app, concurrency=2):
        job = await add.options(delay=3600).enqueue(2, 2)
        await advance(app, 3600)
        assert await job.result(timeout=10) == 4


async def test_drain_timeout_names_what_is_left(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app(queue="t")

    @app.task
    async def forever() -> None:
        await anyio.sleep(3600)

    async with app:
        await forever.enqueue()
        with pytest.raises(DrainTimeout, match="running=1"):
            await drain(app, timeout=1.0)


def test_sample_user_project_passes_its_own_tests() -> None:
    # the sample project under examples/ uses only aioqueue.testing and the
    # pytest plugin that the package registers through its entry point
    project = REPO / "examples" / "userproject"
    env = {k: v for k, v in os.environ.items() if k != "AIOQUEUE_URL"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_plugin_says_how_to_name_the_app_when_it_is_not_configured(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    (tmp_path / "test_x.py").write_text(
        "async def test_x(aioqueue_app):\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode != 0
    assert "aioqueue_app = " in done.stdout + done.stderr


def test_plugin_takes_the_app_name_quoted_in_pytest_ini_as_the_readme_writes_it(
        tmp_path: Path) -> None:
    # Given a pytest.ini naming the app the way the README and the plugin's own
    # error message write it: aioqueue_app = "tasks:app" (ini files keep quotes)
    (tmp_path / "tasks.py").write_text(
        "import aioqueue\n\napp = aioqueue.App()\n\n\n@app.task\n"
        "async def add(x: int, y: int) -> int:\n    return x + y\n")
    (tmp_path / "pytest.ini").write_text(
        '[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n'
        'aioqueue_app = "tasks:app"\n')
    (tmp_path / "test_x.py").write_text(
        "from aioqueue.testing import drain\nfrom tasks import add\n\n\n"
        "async def test_x(aioqueue_app):\n    await add.enqueue(1, 2)\n"
        "    assert (await drain(aioqueue_app)).results() == [3]\n")
    env = {k: v for k, v in os.environ.items() if k != "AIOQUEUE_URL"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    # Then the plugin finds the app and the test passes
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout


async def test_eager_mode_refuses_workflows_with_a_clear_error(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = _app_with_tasks(make_app)
    add = app.tasks["add"]
    async with eager(app):
        with pytest.raises(aioqueue.ConfigurationError, match="workflows"):
            await aioqueue.chain(add.s(1, 2), add.s(3)).enqueue()
