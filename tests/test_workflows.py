"""Chains, groups and chords: results flow, state survives crashes."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

import aioqueue

from .conftest import FAST, running, worker_process
from .workflow_app import build_app


def _tasks(app: aioqueue.App) -> tuple[aioqueue.Task, ...]:  # type: ignore[type-arg]
    @app.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="double")
    async def double(x: int) -> int:
        return 2 * x

    @app.task(name="label")
    async def label(x: int, prefix: str) -> str:
        return f"{prefix}{x}"

    @app.task(name="square")
    async def square(x: int, pause: float = 0.0) -> int:
        await anyio.sleep(pause)
        if x < 0:
            raise ValueError(f"negative {x}")
        return x * x

    @app.task(name="summed")
    async def summed(values: list[int], extra: int = 0) -> int:
        return sum(values) + extra

    return add, double, label, square, summed


async def test_chain_passes_each_result_on(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    add, double, label, _, _ = _tasks(app)
    async with app, running(app):
        wf = await aioqueue.chain(add.s(1, 2), double.s(), label.s(prefix="n=")).enqueue()
        assert await wf.result(timeout=10) == "n=6"
        assert await wf.status() is aioqueue.JobStatus.SUCCEEDED
        assert len(await wf.members()) == 3


async def test_group_results_in_order(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    _, _, _, square, _ = _tasks(app)
    async with app, running(app, concurrency=50):
        # later members finish first
        wf = await aioqueue.group(square.s(i, pause=(20 - i) / 200) for i in range(20)).enqueue()
        assert await wf.result(timeout=10) == [i * i for i in range(20)]


async def test_chord_callback_runs_once_with_all_results(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    _, _, _, square, summed = _tasks(app)
    async with app, running(app, concurrency=50):
        wf = await aioqueue.chord((square.s(i) for i in range(10)), summed.s(extra=1)).enqueue()
        assert await wf.result(timeout=10) == sum(i * i for i in range(10)) + 1
        callbacks = [m for m in await wf.members() if m.id.endswith(".cb")]
        assert len(callbacks) == 1
        assert (await callbacks[0].info()).deliveries == 1


async def test_failed_member_fails_the_workflow(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    add, double, _, square, summed = _tasks(app)
    async with app, running(app):
        wf = await aioqueue.chain(add.s(-5, 1), square.s(), double.s()).enqueue()
        with pytest.raises(aioqueue.JobFailed) as failed:
            await wf.result(timeout=10)
        assert failed.value.error_type == "ValueError"
        assert "negative -4" in failed.value.error_message
        assert await wf.status() is aioqueue.JobStatus.FAILED
        assert len(await wf.members()) == 2  # the last step never ran
        chord = await aioqueue.chord([square.s(1), square.s(-1)], summed.s()).enqueue()
        with pytest.raises(aioqueue.JobFailed):
            await chord.result(timeout=10)
        # continue on error: the failed member's place holds its error
        tolerant = await aioqueue.group([square.s(2), square.s(-2)],
                                        continue_on_error=True).enqueue()
        results = await tolerant.result(timeout=10)
        assert results[0] == 4
        assert results[1]["error"]["type"] == "ValueError"


async def test_cancel_running_workflow(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    add, _, _, square, _ = _tasks(app)
    async with app, running(app):
        wf = await aioqueue.chain(square.s(3, pause=30), add.s(1)).enqueue()
        with anyio.fail_after(5):
            while True:
                members = await wf.members()
                if await members[0].status() is aioqueue.JobStatus.ACTIVE:
                    break
                await anyio.sleep(0.02)
        await wf.cancel()
        with pytest.raises(aioqueue.JobCancelled):
            await wf.result(timeout=5)
        # the workflow ends cancelled in the cancel script itself; its running
        # member ends when its worker has heard and stopped it (the status read
        # at once raced that: it lost on a cluster, where the cancel is relayed)
        with pytest.raises(aioqueue.JobCancelled):
            await members[0].result(timeout=5)  # the member sleeps 30 s: it was stopped
        assert await members[0].status() is aioqueue.JobStatus.CANCELLED
        assert len(await wf.members()) == 1  # the next step was never created


async def test_cancel_reaches_a_running_member_without_the_renewal(
    make_app: Callable[..., aioqueue.App],
) -> None:
    """The cancel notification itself stops the member (on every topology):
    with renewals 20 s apart, the fallback (a renewal reports the flag)
    cannot be what stops it within 3 s."""
    slow_renewal = dataclasses.replace(FAST, lease_s=60.0, renew_interval_s=20.0)
    app = make_app(worker=slow_renewal)
    _, _, _, square, _ = _tasks(app)
    async with app, running(app):
        for _ in range(3):
            wf = await aioqueue.group([square.s(1, pause=30), square.s(2, pause=30)]).enqueue()
            members = await wf.members()
            with anyio.fail_after(5):
                for member in members:
                    while await member.status() is not aioqueue.JobStatus.ACTIVE:
                        await anyio.sleep(0.02)
            await wf.cancel()
            for member in members:
                with pytest.raises(aioqueue.JobCancelled):
                    await member.result(timeout=3)


@pytest.mark.single_server
async def test_thousand_member_group_and_cleanup(
    make_app: Callable[..., aioqueue.App], redis_url: str
) -> None:
    app = make_app(result_ttl_s=1.0)
    _, _, _, square, _ = _tasks(app)
    async with app, aioredis.Redis.from_url(redis_url) as admin:
        baseline = await admin.dbsize()
        async with running(app, concurrency=200):
            wf = await aioqueue.group(square.s(i) for i in range(1000)).enqueue()
            assert await wf.result(timeout=60) == [i * i for i in range(1000)]
        with anyio.fail_after(30):
            while await admin.dbsize() > baseline + 5:
                await anyio.sleep(0.2)
        assert await wf.status() is aioqueue.JobStatus.UNKNOWN


async def test_chord_survives_a_worker_killed_mid_chord(
    redis_url: str, tmp_path: Path
) -> None:
    history = tmp_path / "history.log"
    env = {"AQ_HISTORY": str(history)}
    producer = build_app(redis_url)
    member, total = producer.tasks["member"], producer.tasks["total"]
    async with producer:
        # Given one worker running a chord whose members take a while
        first = worker_process("tests.workflow_app:app", redis_url, "--concurrency", "3",
                               env=env)
        second = None
        try:
            wf = await aioqueue.chord((member.s(i, 1.5) for i in range(6)),
                                      total.s()).enqueue()
            with anyio.fail_after(20):
                while history.read_text().count("start") < 3 if history.exists() else True:
                    await anyio.sleep(0.02)
            # When it is SIGKILLed in the middle, and another worker takes over
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            second = worker_process("tests.workflow_app:app", redis_url,
                                    "--concurrency", "10", env=env)
            # Then the chord completes, with the callback run exactly once
            assert await wf.result(timeout=30) == sum(i * 10 for i in range(6))
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    lines = history.read_text().splitlines()
    assert sum(1 for line in lines if line.startswith("callback")) == 1
    ended = {line.split()[1] for line in lines if line.startswith("end")}
    assert len(ended) == 6  # every member completed (some after a re-delivery)
