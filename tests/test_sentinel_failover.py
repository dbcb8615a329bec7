"""Sentinel failover with a live producer and worker: both follow the
promoted replica without a restart, and no enqueue that a replica confirmed
(``wait_replicas=1``) is lost. The window is printed (``-s``); README
"Scaling" quotes it."""

from __future__ import annotations

from pathlib import Path

import pytest

import aioqueue
from aioqueue.server import ServerBinary

from .conftest import FAST
from .failover_driver import run_through_failover
from .harness.sentinel import LocalSentinel


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["sigkill", "sentinel-failover"])
async def test_producer_and_worker_follow_a_sentinel_failover(
        server_binary: ServerBinary, tmp_path: Path, how: str) -> None:
    """``sigkill``: the primary dies. ``sentinel-failover``: ``SENTINEL
    FAILOVER`` demotes a live primary, so connections still open to it get
    ``READONLY`` on their next write and must move."""
    # two replicas: after the failover one is left to confirm writes
    with LocalSentinel(server_binary, tmp_path, replicas=2) as sentinel:
        app = aioqueue.App(sentinel.url, worker=FAST, wait_replicas=1, wait_timeout_s=1.0,
                           socket_timeout_s=1.0)
        old = sentinel.current_primary()

        def trigger() -> None:
            if how == "sigkill":
                old.kill()
            else:
                sentinel.sentinels[0].call("SENTINEL", "FAILOVER", "mymaster")

        run = await run_through_failover(
            app, trigger, lambda: sentinel.current_primary() is not old)
        assert set(run.confirmed) <= run.done  # no confirmed enqueue lost
        print("\n" + run.summary(f"sentinel failover ({how})"))
