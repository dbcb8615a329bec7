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


def test_limits_shows_and_changes_concurrency_per_task_and_per_key(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Running and waiting jobs per key, the declared limit, and an
    operator's value for the task and for one key, changed at runtime."""
    import anyio

    from .groups_app import build

    async def setup() -> None:
        app = build(redis_url)
        async with app:
            export = app.tasks["export"]
            for _ in range(3):
                await export.enqueue("acme", 0.0)
            await export.enqueue("zed", 0.0)
            async with app.broker.blocking_client("t") as lane:
                await app.broker.claim(lane, "groups", 10, 60_000, "w1")

    anyio.run(setup)
    argv = ["limits", "tests.groups_app:app", "--url", redis_url]
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr()[0])
    limits = {r["task"]: r for r in rows if r["kind"] == "concurrency"}
    assert limits["export"]["effective"] == "2" and limits["single"]["declared"] == "1"
    keys = {r["key"]: r for r in rows if r["kind"] == "key"}
    assert (keys["acme"]["running"], keys["acme"]["waiting"], keys["acme"]["at_limit"]) == (
        2, 1, True)
    assert (keys["zed"]["running"], keys["zed"]["waiting"]) == (1, 0)

    assert main([*argv, "--task", "export", "--max-concurrency", "5"]) == 0
    out = capsys.readouterr()[0]
    assert "max running per key" in out and "acme" in out and "at limit" not in out
    assert main([*argv, "--task", "export", "--key", "zed", "--max-concurrency", "off",
                 "--json"]) == 0
    keys = {r["key"]: r for r in json.loads(capsys.readouterr()[0]) if r["kind"] == "key"}
    assert keys["zed"]["limit"] is None and keys["zed"]["override"] == "off"
    assert keys["acme"]["limit"] == 5
    assert main([*argv, "--task", "export", "--clear-concurrency", "--json"]) == 0
    keys = {r["key"]: r for r in json.loads(capsys.readouterr()[0]) if r["kind"] == "key"}
    assert keys["acme"]["limit"] == 2
    assert main([*argv, "--max-concurrency", "3"]) == 2  # which task?
    assert "need --task" in capsys.readouterr()[1]

    assert main([*argv, "--task", "metered", "--key-rate", "5/s", "--burst", "3", "--json"]) == 0
    limits = {r["task"]: r for r in json.loads(capsys.readouterr()[0])
              if r["kind"] == "concurrency"}
    assert (limits["metered"]["key_rate_declared"], limits["metered"]["key_rate_effective"],
            limits["metered"]["effective"]) == ("10/s (burst 2)", "5/s (burst 3)", "-")
    assert main([*argv, "--task", "metered", "--clear-key-rate"]) == 0
    out = capsys.readouterr()[0]
    assert "rate per key" in out and "5/s" not in out
    assert main([*argv, "--task", "metered", "--key-rate", "lots"]) == 2
    assert "must look like" in capsys.readouterr()[1]
