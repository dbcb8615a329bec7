"""Structured logs (issue 11): JSON lines with job fields on every job log
record, and repeated warnings folded so an outage cannot flood the log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

import aioqueue
from aioqueue.logs import JobFieldsFilter, JsonFormatter, RepeatFilter

from .conftest import running


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobFieldsFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_every_record_logged_during_a_job_carries_its_fields(
        make_app: Callable[..., aioqueue.App], queue_name: str, json_lines: io.StringIO) -> None:
    app = make_app(queue=queue_name)
    user_log = logging.getLogger("user.code")

    @app.task
    async def greet(name: str) -> str:
        user_log.info("greeting %s", name)
        return name

    @app.task(max_tries=1)
    async def boom() -> None:
        raise ValueError("bad <input>")

    async with app, running(app):
        ok = await greet.enqueue("ada")
        bad = await boom.enqueue()
        assert await ok.result(timeout=10) == "ada"
        with pytest.raises(aioqueue.JobFailed):
            await bad.result(timeout=10)
    records = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    mine = next(r for r in records if r["logger"] == "user.code")
    assert mine["message"] == "greeting ada" and mine["level"] == "info"
    assert (mine["job_id"], mine["queue"], mine["attempt"]) == (ok.id, queue_name, 1)
    assert mine["task"].endswith("greet") and mine["ts"].endswith("+00:00")
    dead = next(r for r in records if r.get("job_id") == bad.id and r["level"] == "error")
    assert dead["task"].endswith("boom") and "bad <input>" in dead["message"]
    # records outside a job have no job fields
    assert all("job_id" not in r for r in records if r["logger"] == "aioqueue.worker"
               and "shutting down" in r["message"])


def test_repeated_warnings_are_folded_with_a_count() -> None:
    now = [0.0]
    folded = RepeatFilter(window_s=10.0, clock=lambda: now[0])
    logger = logging.getLogger("test.repeat")
    passed: list[str] = []

    def warn(msg: str, *args: object) -> None:
        record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, args, None)
        if folded.filter(record):
            passed.append(record.getMessage())

    for second in range(50):  # a 5 s outage, ten retries a second
        now[0] = second / 10
        warn("cannot reach Redis: %s", f"attempt {second}")
    warn("another problem")
    now[0] = 11.0
    warn("cannot reach Redis: %s", "again")
    assert passed == ["cannot reach Redis: attempt 0", "another problem",
                      "cannot reach Redis: again (49 similar message(s) suppressed)"]


def test_cli_accepts_log_format_json(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from aioqueue.cli import main

    assert main(["--log-format", "json", "info", "tests.ops_app:app", "--url", redis_url,
                 "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)
