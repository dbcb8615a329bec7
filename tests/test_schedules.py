"""Periodic tasks: exactly one run per tick across supervisors, DST, missed ticks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import pytest

import aioqueue
from aioqueue import JobContext

from .conftest import BINARIES, REPO


async def test_four_supervisors_fire_each_tick_exactly_once(
    make_app: Callable[..., aioqueue.App], server_binary: aioqueue.server.ServerBinary
) -> None:
    if server_binary != BINARIES[0]:
        pytest.skip("30 s test: run against one server kind")
    app = make_app()
    runs: list[str] = []

    @app.cron(every=timedelta(seconds=1), name="heartbeat")
    @app.task
    async def beat(ctx: JobContext) -> None:
        runs.append(ctx.job_id)

    async with app:
        supervisors = [aioqueue.Supervisor(app, concurrency=5) for _ in range(4)]
        async with anyio.create_task_group() as tg:
            for sup in supervisors:
                await tg.start(sup.run)
            with anyio.fail_after(60):
                while len(runs) < 30:
                    await anyio.sleep(0.05)
            for sup in supervisors:
                sup.request_shutdown()
    ticks = [int(r.rsplit(".", 1)[1]) for r in runs[:30]]
    assert len(set(runs)) == len(runs), "a tick ran twice"
    assert all(t % 1000 == 0 for t in ticks)
    assert ticks == sorted(ticks) and ticks[-1] - ticks[0] == 29_000  # consecutive ticks


def test_cron_ticks_across_dst() -> None:
    app = aioqueue.App("redis://unused")

    @app.task
    async def nightly() -> None:
        return None

    sched = app.schedule(nightly, cron="30 2 * * *", tz="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")

    def ticks_from(start: datetime, n: int) -> list[datetime]:
        out, ms = [], int(start.timestamp() * 1000)
        for _ in range(n):
            ms = sched.next_after(ms)
            out.append(datetime.fromtimestamp(ms / 1000, berlin))
        return out

    # spring forward (2026-03-29 02:00 -> 03:00): 02:30 does not exist, runs at 03:00 once
    spring = ticks_from(datetime(2026, 3, 28, 12, tzinfo=berlin), 3)
    assert [t.strftime("%m-%d %H:%M") for t in spring] == [
        "03-29 03:00", "03-30 02:30", "03-31 02:30"]
    # fall back (2026-10-25 03:00 -> 02:00): 02:30 happens twice, runs once
    autumn = ticks_from(datetime(2026, 10, 24, 12, tzinfo=berlin), 2)
    assert [t.strftime("%m-%d %H:%M") for t in autumn] == ["10-25 02:30", "10-26 02:30"]
    # the first 02:30 (CEST, 00:30 UTC) fires; the repeated hour does not fire again
    assert autumn[0].astimezone(UTC).strftime("%H:%M") == "00:30"
    assert autumn[1].timestamp() - autumn[0].timestamp() == 25 * 3600
    # latest tick at or before a time
    now = datetime(2026, 3, 30, 2, 30, 0, tzinfo=berlin)
    assert sched.latest_at_or_before(int(now.timestamp() * 1000)) == int(now.timestamp() * 1000)


@pytest.mark.parametrize("policy", ["run_once", "skip"])
async def test_missed_ticks_follow_policy(
    make_app: Callable[..., aioqueue.App], policy: str
) -> None:
    app = make_app()
    runs: list[str] = []

    @app.task
    async def report(ctx: JobContext) -> None:
        runs.append(ctx.job_id)

    sched = app.schedule(report, every=timedelta(minutes=1), name="report",
                         missed=policy)  # type: ignore[arg-type]
    async with app:
        # Given every supervisor was down for the last 10 minutes
        now_ms = await app.broker.server_time_ms()
        latest = sched.latest_at_or_before(now_ms)
        if now_ms - latest < (sched.grace_s + 1) * 1000:
            # the latest tick is still "on time": wait until it counts as missed
            await anyio.sleep((latest + (sched.grace_s + 1) * 1000 - now_ms) / 1000)
            now_ms = await app.broker.server_time_ms()
            latest = sched.latest_at_or_before(now_ms)
        await app.broker.mark_tick(sched.queue, "report", latest - 10 * 60_000, only_new=True)
        await app.broker.mark_tick(sched.queue, "gone-from-code", 1, only_new=True)
        # When a supervisor comes back
        sup = aioqueue.Supervisor(app, concurrency=5)
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            with anyio.fail_after(5):
                while (await app.broker.last_ticks(sched.queue)).get("report") != latest:
                    await anyio.sleep(0.02)
            if policy == "run_once":
                with anyio.fail_after(5):
                    while not runs:
                        await anyio.sleep(0.02)
            sup.request_shutdown()
        # Then the missed ticks ran once (run_once) or not at all (skip)
        assert runs == ([sched.job_id(latest)] if policy == "run_once" else [])
        assert "gone-from-code" not in await app.broker.last_ticks(sched.queue)


def test_invalid_schedules_refused() -> None:
    app = aioqueue.App("redis://unused")

    @app.task
    async def job() -> None:
        return None

    with pytest.raises(aioqueue.ConfigurationError):
        app.schedule(job, cron="not a cron")
    with pytest.raises(aioqueue.ConfigurationError):
        app.schedule(job, cron="* * * * *", every=5)
    with pytest.raises(aioqueue.ConfigurationError):
        app.schedule(job, cron="* * * * *", tz="Mars/Olympus")
    app.schedule(job, every=5)
    with pytest.raises(aioqueue.ConfigurationError):
        app.schedule(job, every=10)  # same default name
    assert datetime.now(UTC)  # the module imports cleanly


def test_schedules_cli_lists_next_fire(redis_url: str, tmp_path: object) -> None:
    code = (
        "import aioqueue\n"
        "app = aioqueue.App()\n"
        "@app.cron('*/5 * * * *', tz='Europe/Berlin')\n"
        "@app.task\n"
        "async def tidy() -> None: ...\n"
    )
    module = REPO / "tests" / "_sched_app.py"
    module.write_text(code)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "aioqueue", "schedules", "tests._sched_app:app",
             "--url", redis_url], capture_output=True, text=True, cwd=REPO, timeout=60,
            check=False)
        as_json = subprocess.run(
            [sys.executable, "-m", "aioqueue", "schedules", "tests._sched_app:app",
             "--url", redis_url, "--json"], capture_output=True, text=True, cwd=REPO,
            timeout=60, check=False)
    finally:
        module.unlink()
    assert done.returncode == 0, done.stderr
    assert "tidy\ttask=tidy\tcron '*/5 * * * *' (Europe/Berlin)" in done.stdout
    assert "next=" in done.stdout and "1 schedule(s)" in done.stdout
    assert as_json.returncode == 0, as_json.stderr
    (row,) = json.loads(as_json.stdout)
    assert (row["name"], row["task"], row["queue"]) == ("tidy", "tidy", "default")
    assert row["cron"] == "*/5 * * * *" and row["tz"] == "Europe/Berlin"
    assert row["last_ms"] is None and row["next_ms"] > 0
