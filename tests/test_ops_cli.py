"""The operator commands of the CLI (issue 11), run in-process on a real server."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pytest

import aioqueue
from aioqueue.broker_admin import BrokerAdmin
from aioqueue.cli import main

from . import ops_app
from .conftest import FAST, running

T = TypeVar("T")
APP = "tests.ops_app:app"


def _cli(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main([*argv[:1], APP, "--url", url, *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def _in_app(url: str, body: Callable[[aioqueue.App], Awaitable[T]]) -> T:
    app = ops_app.app
    app.url = url

    async def run() -> T:
        async with app:
            return await body(app)

    return anyio.run(run)


def test_info_lists_every_known_queue_as_a_table_and_json(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def setup(app: aioqueue.App) -> None:
        await ops_app.add.options(priority=3).enqueue(1, 2)
        await ops_app.add.enqueue(1, 2)
        # a queue this app's code never names, known from the registry
        await BrokerAdmin(app.broker.lane, app.prefix).register_queues(["elsewhere-only"])
        await app.enqueue_with("foreign", queue="elsewhere-only")

    _in_app(redis_url, setup)
    code, out, _ = _cli(capsys, redis_url, "info")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["QUEUE", "WAITING"]
    ops_line = next(line for line in lines if line.startswith("ops "))
    assert "p3=1 p0=1" in ops_line
    assert any(line.startswith("other ") for line in lines)
    code, out, _ = _cli(capsys, redis_url, "info", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["ops"]["waiting"] == 2 and rows["ops"]["paused"] is False
    assert rows["ops"]["waiting_by_priority"] == {"3": 1, "0": 1}
    assert rows["elsewhere-only"]["waiting"] == 1


def test_jobs_pages_with_a_cursor_and_job_shows_errors_and_tracebacks(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def setup(app: aioqueue.App) -> list[str]:
        ids = [(await ops_app.add.enqueue(n, n)).id for n in range(5)]
        dead = await ops_app.explode.enqueue("kaboom <b>")
        app.worker_settings = FAST
        async with running(app):
            with pytest.raises(aioqueue.JobFailed):
                await dead.result(timeout=20)
        return [*ids, dead.id]

    *_, dead_id = _in_app(redis_url, setup)
    code, out, _ = _cli(capsys, redis_url, "jobs", "ops", "--state", "dead", "--json")
    page = json.loads(out)
    assert [j["id"] for j in page["jobs"]] == [dead_id] and page["next_cursor"] is None

    code, out, _ = _cli(capsys, redis_url, "job", dead_id)
    assert code == 0
    assert "status:      failed" in out
    assert "error (attempt 1): RuntimeError: kaboom <b>" in out
    assert "error (attempt 2): RuntimeError: kaboom <b>" in out
    assert "Traceback" in out and "kaboom <b>" in out.split("arguments:")[1].splitlines()[0]

    code, out, _ = _cli(capsys, redis_url, "job", dead_id, "--json")
    detail = json.loads(out)
    assert detail["queue"] == "ops" and len(detail["errors"]) == 2


def test_jobs_cursor_walks_waiting_jobs(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def setup(app: aioqueue.App) -> list[str]:
        return [(await ops_app.add.enqueue(n, n)).id for n in range(5)]

    ids = _in_app(redis_url, setup)
    code, out, _ = _cli(capsys, redis_url, "jobs", "ops", "--limit", "3")
    assert code == 0 and "3 of 5 waiting job(s)" in out
    cursor = out.rsplit("--cursor ", 1)[1].strip()
    first = [line.split()[0] for line in out.splitlines()[1:4]]
    code, out, _ = _cli(capsys, redis_url, "jobs", "ops", "--limit", "3", "--cursor", cursor)
    second = [line.split()[0] for line in out.splitlines()[1:3]]
    assert first + second == ids and "next page" not in out


def test_waiting_jobs_not_listed_are_counted_and_pointed_to(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given jobs waiting in a concurrency group (not in the priority lists)
    async def setup(app: aioqueue.App) -> None:
        await ops_app.add.enqueue(1, 2)
        for customer in ("a", "a", "b"):
            await ops_app.export.enqueue(customer)

    _in_app(redis_url, setup)
    # When an operator lists the queue's waiting jobs
    code, out, _ = _cli(capsys, redis_url, "jobs", "ops")
    # Then the page lists the plain one and says where the other three are
    assert code == 0 and "1 of 1 waiting job(s)" in out
    assert "3 more waiting" in out and "aioqueue limits" in out


def test_unknown_job_is_a_one_line_error(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, redis_url, "job", "no-such-job")
    assert code == 2 and "no job 'no-such-job' in any known queue" in err


def test_enqueue_validates_arguments_like_python_then_cancel_by_id(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, redis_url, "enqueue", "add", "--args", '["one", 2]')
    assert code == 2 and "nothing enqueued" in err and "valid integer" in err
    code, _, err = _cli(capsys, redis_url, "enqueue", "add", "--args", "{")
    assert code == 2 and "--args is not valid JSON" in err
    code, _, err = _cli(capsys, redis_url, "enqueue", "nope")
    assert code == 2 and "no task named 'nope'" in err
    code, out, _ = _cli(capsys, redis_url, "enqueue", "add", "--args", "[1, 2]",
                        "--job-id", "cli-1", "--priority", "4", "--json")
    assert json.loads(out) == {"id": "cli-1", "queue": "ops"}

    def check(status: Any) -> Any:
        return _in_app(redis_url, lambda app: app.job("cli-1", "ops").status())

    assert check(None) is aioqueue.JobStatus.QUEUED
    code, out, _ = _cli(capsys, redis_url, "cancel", "cli-1")
    assert code == 0 and out.strip() == "job cli-1: cancelled"
    assert check(None) is aioqueue.JobStatus.CANCELLED


def test_purge_needs_yes_off_a_terminal_and_cancels_waiting_jobs(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def setup(app: aioqueue.App) -> list[str]:
        return [(await ops_app.add.enqueue(n, n)).id for n in range(4)]

    _in_app(redis_url, setup)
    code, _, err = _cli(capsys, redis_url, "purge", "ops")
    assert code == 2 and "--yes" in err
    code, out, _ = _cli(capsys, redis_url, "purge", "ops", "--yes")
    assert code == 0 and "purged 4 waiting job(s)" in out
    code, out, _ = _cli(capsys, redis_url, "info", "--queues", "ops", "--json")
    assert json.loads(out)[0]["waiting"] == 0


def test_pause_and_resume_report_the_stored_state(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, redis_url, "pause", "ops")
    assert code == 0 and out.strip() == "queue 'ops' is paused"
    code, out, _ = _cli(capsys, redis_url, "info", "--queues", "ops")
    assert out.splitlines()[1].split()[6] == "yes"
    code, out, _ = _cli(capsys, redis_url, "resume", "ops", "--json")
    assert json.loads(out) == {"paused": False, "queue": "ops"}


def test_info_watch_refreshes_as_json_lines(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["info", APP, "--url", redis_url, "--queues", "ops", "--json",
                 "--watch", "0.05", "--count", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 3
    assert all(json.loads(line)[0]["name"] == "ops" for line in lines)
