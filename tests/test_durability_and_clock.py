"""Durability mode (WAIT / WAITAOF) and a worker whose clock is an hour off."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import redis

import aioqueue
from aioqueue.server import ServerBinary, ServerProcess

from .conftest import REPO, worker_process
from .skew_app import app as skew_app


def _replica_of(binary: ServerBinary, primary: ServerProcess, tmp: Path) -> ServerProcess:
    replica = ServerProcess(binary, directory=tmp / "replica",
                            extra_args=["--replicaof", "127.0.0.1", str(primary.port)])
    replica.start()
    with redis.Redis(port=replica.port) as r:
        deadline = time.monotonic() + 15
        while r.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "replica never linked"
            time.sleep(0.05)
    return replica


async def test_wait_replicas_confirms_or_says_unknown(
    make_app: Callable[..., aioqueue.App], server_binary: ServerBinary, tmp_path: Path,
    own_server: ServerProcess,
) -> None:
    strict = make_app(own_server.url, wait_replicas=1, wait_timeout_s=0.2)

    @strict.task
    async def noop(n: int) -> int:
        return n

    async with strict:
        # Given no replica: the write happens but cannot be confirmed
        with pytest.raises(aioqueue.DurabilityUnconfirmed) as unknown:
            await noop.options(job_id="j1").enqueue(1)
        assert unknown.value.job_ids == ["j1"]
        assert await strict.job("j1").status() is aioqueue.JobStatus.QUEUED
        with pytest.raises(aioqueue.DurabilityUnconfirmed):
            await noop.enqueue_many([noop.bind(i) for i in range(3)])
        # Given a linked replica: enqueues are confirmed
        replica = _replica_of(server_binary, own_server, tmp_path)
        try:
            job = await noop.enqueue(2)
            assert await job.status() is aioqueue.JobStatus.QUEUED
            await noop.enqueue_many([noop.bind(i) for i in range(3)])
            # retrying the unconfirmed one with the same id is a no-op, now confirmed
            again = await noop.options(job_id="j1").enqueue(1)
            assert again.id == "j1"
        finally:
            replica.close()


async def test_wait_fsync(make_app: Callable[..., aioqueue.App],
                          own_server: ServerProcess) -> None:
    app = make_app(own_server.url, wait_fsync=True, wait_timeout_s=1.0)

    @app.task
    async def noop() -> None:
        return None

    version = tuple(int(x) for x in own_server.binary.version.split(".")[:2])
    async with app:  # own_server runs with appendonly yes
        if own_server.binary.kind == "redis" and version < (7, 2):
            with pytest.raises(aioqueue.ConfigurationError, match="WAITAOF"):
                await noop.enqueue()
        else:
            job = await noop.enqueue()
            assert await job.status() is aioqueue.JobStatus.QUEUED


async def test_worker_clock_an_hour_off_changes_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    # Given a worker process whose wall clock runs an hour ahead
    (tmp_path / "sitecustomize.py").write_text(
        "import time\n_real = time.time\ntime.time = lambda: _real() + 3600.0\n")
    worker = worker_process("tests.skew_app:app", redis_url,
                            env={"PYTHONPATH": f"{tmp_path}:{REPO}"})
    skew_app.url = redis_url
    try:
        async with skew_app:
            wall = skew_app.tasks["wall_clock"]
            long = skew_app.tasks["long"]
            skewed = await (await wall.enqueue()).result(timeout=20)
            assert skewed - time.time() > 3500  # the skew is real
            # When a delayed job and a job longer than the lease run there
            t0 = time.monotonic()
            delayed = await wall.options(delay=0.5).enqueue()
            await delayed.result(timeout=10)
            waited = time.monotonic() - t0
            job = await long.enqueue(2.5)
            assert await job.result(timeout=15) == "done"
            # Then the delay is honoured by server time and the lease never expired
            assert 0.45 <= waited < 2.0, waited
            stats = await skew_app.broker.stats("skew")
            assert "lease_expired" not in stats, stats
            assert (await job.info()).deliveries == 1
    finally:
        worker.terminate()
        assert worker.wait(20) == 0
        skew_app.url = "redis://localhost:6379/0"
    await anyio.sleep(0)
