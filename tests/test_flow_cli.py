"""``aioqueue limits``: rate limits seen and changed at runtime (#13 items 1, 4)."""

from __future__ import annotations

import json

import pytest

from aioqueue.cli import main

APP = "tests.flow_app:app"


def _cli(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["limits", APP, "--url", url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_limits_shows_sets_turns_off_and_clears_a_task_limit(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, redis_url)  # opening the app stores the code's limit
    assert code == 0 and "tick" in out and "50/s (burst 5)" in out

    code, out, _ = _cli(capsys, redis_url, "--json")
    [row] = json.loads(out)
    assert (row["task"], row["declared"], row["effective"], row["tokens"]) == (
        "tick", "50/s (burst 5)", "50/s (burst 5)", 5)

    code, out, _ = _cli(capsys, redis_url, "--queue", "flow", "--task", "tick",
                        "--set", "600/m", "--burst", "20", "--json")
    [row] = json.loads(out)
    assert code == 0 and row["override"] == "600/m (burst 20)" and row["tokens"] == 20
    assert row["effective"] == row["override"] and row["declared"] == "50/s (burst 5)"

    code, out, _ = _cli(capsys, redis_url, "--queue", "flow", "--task", "tick", "--off")
    assert code == 0 and "off" in out and "tick" in out

    code, out, _ = _cli(capsys, redis_url, "--queue", "flow", "--task", "tick", "--clear",
                        "--json")
    [row] = json.loads(out)
    assert row["override"] == "-" and row["effective"] == "50/s (burst 5)"


def test_limits_refuses_a_bad_rate_in_one_line(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, redis_url, "--queue", "flow", "--set", "ten per second")
    assert code == 2 and "must look like '10/s'" in err and "Traceback" not in err
    code, out, err = _cli(capsys, redis_url, "--set", "10/s")
    assert code == 0  # one queue (the app's only one)
