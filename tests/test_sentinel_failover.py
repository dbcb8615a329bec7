"""Sentinel failover with a live producer and worker: both follow the
promoted replica without a restart, and no enqueue that a replica confirmed
(``wait_replicas=1``) is lost. The unavailability window is measured and
printed (``-s``); README "Scaling" quotes it."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

import aioqueue
from aioqueue.server import ServerBinary

from .conftest import FAST, running
from .harness.sentinel import LocalSentinel


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["sigkill", "sentinel-failover"])
async def test_producer_and_worker_follow_a_sentinel_failover(
        server_binary: ServerBinary, tmp_path: Path, how: str) -> None:
    """``sigkill``: the primary dies. ``sentinel-failover``: ``SENTINEL
    FAILOVER`` demotes a live primary, so connections still open to it get
    ``READONLY`` on their next write and must move."""
    with LocalSentinel(server_binary, tmp_path, replicas=2) as sentinel:
        app = aioqueue.App(sentinel.url, worker=FAST, wait_replicas=1, wait_timeout_s=1.0,
                           socket_timeout_s=1.0)
        done: set[int] = set()

        @app.task
        async def record(n: int) -> int:
            done.add(n)
            return n

        confirmed: dict[int, float] = {}  # n -> when its enqueue returned
        unconfirmed: list[int] = []
        refused: list[str] = []
        triggered_at: float | None = None
        switched_at: float | None = None
        async with app, running(app):
            n = 0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                n += 1
                try:
                    await record.options(job_id=f"j{n}").enqueue(n)
                    confirmed[n] = time.monotonic()
                except aioqueue.DurabilityUnconfirmed:
                    unconfirmed.append(n)
                except aioqueue.BrokerError as exc:  # the primary is gone, not yet replaced
                    refused.append(type(exc).__name__)
                    await anyio.sleep(0.05)
                if triggered_at is None and len(confirmed) >= 50:
                    old = sentinel.current_primary()
                    if how == "sigkill":
                        old.kill()
                    else:
                        sentinel.sentinels[0].call("SENTINEL", "FAILOVER", "mymaster")
                    triggered_at = time.monotonic()
                if triggered_at is not None and switched_at is None and n % 20 == 0 \
                        and sentinel.current_primary() is not old:
                    switched_at = time.monotonic()
                if switched_at is not None and \
                        sum(t > switched_at for t in confirmed.values()) >= 50:
                    break
                await anyio.sleep(0.005)
            assert switched_at is not None, "no failover within the deadline"
            assert triggered_at is not None
            times = sorted([triggered_at, *(t for t in confirmed.values() if t > triggered_at)])
            window = max(b - a for a, b in zip(times, times[1:], strict=False))
            # the worker follows too: every confirmed job runs, before and after
            with anyio.fail_after(60):
                while not set(confirmed) <= done:
                    await anyio.sleep(0.05)
        assert sentinel.current_primary() is not old
        print(f"\nsentinel failover ({how}): no enqueue completed for {window:.2f}s "
              f"({len(refused)} refused, {len(unconfirmed)} unconfirmed, "
              f"{len(confirmed)} confirmed, 0 confirmed lost)")
