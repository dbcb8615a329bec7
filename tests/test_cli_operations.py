"""Operator paths of the ``aioqueue`` command: replay, dev, bad URLs, options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import aioqueue
from aioqueue.server import ServerProcess

from .conftest import REPO, running
from .helpers import wait_until


def _cli(*args: str, url: str | None = None, timeout: float = 60
         ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("AIOQUEUE_URL", None)
    if url is not None:
        env["AIOQUEUE_URL"] = url
    return subprocess.run([sys.executable, "-m", "aioqueue", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _failing_app(make_app: Callable[..., aioqueue.App], runs: list[int]) -> aioqueue.App:
    app = make_app()

    @app.task(name="boom", max_tries=1)
    async def boom(n: int) -> None:
        runs.append(n)
        raise RuntimeError(f"boom {n}")

    return app


async def test_replay_dead_with_new_ids_replays_a_snapshot_once(
        make_app: Callable[..., aioqueue.App]) -> None:
    runs: list[int] = []
    app = _failing_app(make_app, runs)
    async with app, running(app):
        boom = app.get_task("boom")
        for n in range(3):
            await boom.enqueue(n)
        await wait_until(lambda: _dead_count(app, 3), 30, what="3 dead jobs")
        # When the dead jobs are replayed as new jobs while a worker runs,
        # and each dies again at once
        replayed = await app.replay_dead(new_ids=True)
        assert len(replayed) == 3
        await wait_until(lambda: _dead_count(app, 3), 30, what="3 dead again")
        await wait_until(lambda: len(runs) >= 6, 30, what="6 runs")
    # Then each ran once more: the replay took the dead jobs present when it
    # began, not the ones that died during it
    assert sorted(runs) == [0, 0, 1, 1, 2, 2]


async def _dead_count(app: aioqueue.App, expected: int) -> bool:
    return (await app.queue_info())["dead"] == expected


async def test_replay_dead_of_unknown_id_replays_nothing(
        make_app: Callable[..., aioqueue.App]) -> None:
    runs: list[int] = []
    app = _failing_app(make_app, runs)
    async with app:
        assert await app.replay_dead(["no-such-job"]) == []
        assert await app.replay_dead(["no-such-job"], new_ids=True) == []


def test_cli_replay_of_unknown_id_says_so(redis_url: str) -> None:
    done = _cli("dead", "replay", "tests.cli_app:app", "no-such-job", url=redis_url)
    assert done.returncode != 0
    assert "no-such-job" in done.stderr
    assert "Traceback" not in done.stderr


def test_dev_refuses_a_port_that_is_taken(own_server: ServerProcess, tmp_path: Path) -> None:
    # Given a server already on the port, `aioqueue dev --port` must not run against it
    done = _cli("dev", "--port", str(own_server.port), "--dir", str(tmp_path / "d"),
                timeout=60)
    assert done.returncode != 0
    assert str(own_server.port) in done.stderr
    assert "Traceback" not in done.stderr
    assert "listening on" not in done.stdout


@pytest.mark.parametrize("make_url", [
    lambda port: "notaurl",
    lambda port: f"http://127.0.0.1:{port}/0",
    lambda port: f"redis://127.0.0.1:{port}/x",
    lambda port: f"redis://127.0.0.1:{port}/99",
], ids=["not-a-url", "http", "db-not-a-number", "db-out-of-range"])
def test_bad_url_is_one_line_not_a_traceback(make_url: Callable[[int], str],
                                             own_server: ServerProcess) -> None:
    done = _cli("dead", "list", "tests.cli_app:app", "--url", make_url(own_server.port))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("aioqueue: error:")


def test_log_level_works_after_the_subcommand(redis_url: str) -> None:
    done = _cli("dead", "list", "tests.cli_app:app", "--log-level", "DEBUG", url=redis_url)
    assert done.returncode == 0, done.stderr
    assert "0 dead-lettered job(s)" in done.stdout


def test_version_option() -> None:
    done = _cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"aioqueue {aioqueue.__version__}"


async def test_worker_without_queues_consumes_its_tasks_queues_and_says_which(
        redis_url: str) -> None:
    from .cli_app import app

    app.url = redis_url
    async with app:
        job = await app.get_task("elsewhere").enqueue(21)
        assert job.queue == "other"
    done = _cli("worker", "tests.cli_app:app", "--burst", url=redis_url)
    assert done.returncode == 0, done.stderr
    # the banner names the tasks and the queues
    assert "boom" in done.stderr and "elsewhere" in done.stderr
    assert "default" in done.stderr and "other" in done.stderr
    async with app:
        assert await app.job(job.id, "other").result(timeout=5) == 42


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_dead_list_refuses_a_limit_that_would_read_every_dead_letter(limit: str) -> None:
    # `dead list --limit 0` read the whole dead-letter set (ZRANGE 0 -1)
    from aioqueue.cli import build_parser
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["dead", "list", "tests.cli_app:app", "--limit", limit])
    assert exc.value.code == 2


async def test_dead_list_prints_json_for_scripts(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    # Given two dead-lettered jobs of tests.cli_app's task 'boom'
    runs: list[int] = []
    app = _failing_app(make_app, runs)
    async with app, running(app):
        boom = app.get_task("boom")
        ids = [(await boom.enqueue(n)).id for n in range(2)]
        await wait_until(lambda: _dead_count(app, 2), 30, what="2 dead jobs")
        infos = {info.id: info for info in await app.dead_letters()}
    # When an operator lists them with --json
    done = await anyio.to_thread.run_sync(
        lambda: _cli("dead", "list", "tests.cli_app:app", "--json", url=redis_url))
    # Then each is an object with its id, arguments and last error
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert sorted(row["id"] for row in rows) == sorted(ids)
    for row in rows:
        assert row["error"]["type"] == "RuntimeError"
        assert row["task_args"] == infos[row["id"]].task_args
