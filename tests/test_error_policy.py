"""The one error policy: replies that mean "not now" (BUSY, READONLY...) make
the worker back off and carry on with one log line; the producer gets a typed
error. Real servers: a long script from another client, a read-only replica."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
import redis

import aioqueue
from aioqueue.errors import (
    ErrorKind,
    RedisBusy,
    RedisOutOfMemory,
    RedisReadOnly,
    RedisUnavailable,
    WrongKeyType,
    classify,
)
from aioqueue.server import ServerBinary, ServerProcess

from .conftest import running
from .helpers import wait_until

# Runs (without writing, so SCRIPT KILL may stop it) until killed, at most 60 s.
LONG_SCRIPT = """
local start = redis.call('TIME')
while true do
  local now = redis.call('TIME')
  if now[1] - start[1] > 60 then return 1 end
end
"""


def run_long_script(url: str) -> None:
    with redis.Redis.from_url(url, socket_timeout=120) as client:
        try:
            client.eval(LONG_SCRIPT, 0)
        except redis.ResponseError:
            pass  # killed by the test


def worker_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    """The worker's retry-loop warnings naming ``text`` (the heartbeat says
    once per outage on its own that it could not beat)."""
    return [r for r in caplog.records if r.name == "aioqueue.worker"
            and text in r.getMessage() and "backing off" in r.getMessage()]


@pytest.fixture
def busy_server(server_binary: ServerBinary, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server that answers BUSY once a script has run for 50 ms."""
    server = ServerProcess(server_binary, directory=tmp_path / "redis",
                           extra_args=["--lua-time-limit", "50"])
    server.start()
    try:
        yield server
    finally:
        server.close()


async def test_worker_survives_busy_script_from_another_client(
    busy_server: ServerProcess, make_app: Callable[..., aioqueue.App],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "aioqueue")
    url = busy_server.url
    app = make_app(url)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    async with app, running(app) as supervisor:
        assert await (await double.enqueue(1)).result(timeout=20) == 2
        # Given another client's script that keeps Redis busy
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, run_long_script, url)
            # Then the worker meets BUSY, says so, and backs off
            await wait_until(lambda: worker_warnings(caplog, "RedisBusy"), 30,
                             what="the worker's BUSY warning")
            # and a producer gets a typed, transient error
            with pytest.raises(RedisBusy) as busy:
                await double.enqueue(2)
            assert classify(busy.value) is ErrorKind.TRANSIENT
            with redis.Redis.from_url(url) as admin:
                admin.script_kill()
        # When the script has ended, the same worker runs new jobs
        jobs = [await double.enqueue(i) for i in range(10)]
        assert [await j.result(timeout=20) for j in jobs] == [2 * i for i in range(10)]
        assert supervisor.counters["succeeded"] == 11
    # one line for the outage, no traceback
    assert len(worker_warnings(caplog, "RedisBusy")) == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.fixture
def replica_pair(server_binary: ServerBinary,
                 tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """A primary and a read-only replica of it."""
    primary = ServerProcess(server_binary, directory=tmp_path / "primary")
    primary.start()
    replica = ServerProcess(server_binary, directory=tmp_path / "replica",
                            extra_args=["--replicaof", "127.0.0.1", str(primary.port)])
    try:
        replica.start()
        yield primary, replica
    finally:
        replica.close()
        primary.close()


def readonly_errors(server: ServerProcess) -> int:
    with redis.Redis.from_url(server.url) as client:
        stats = client.info("errorstats")
    entry = stats.get("errorstat_READONLY", {})
    return int(entry.get("count", 0)) if isinstance(entry, dict) else 0


def replicated(server: ServerProcess, key_pattern: str) -> bool:
    with redis.Redis.from_url(server.url) as client:
        return bool(client.keys(key_pattern))


async def test_worker_on_read_only_replica_backs_off_then_runs_after_promotion(
    replica_pair: tuple[ServerProcess, ServerProcess],
    make_app: Callable[..., aioqueue.App], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "aioqueue")
    primary, replica = replica_pair

    def build(url: str) -> tuple[aioqueue.App, aioqueue.Task[[int], int]]:
        app = make_app(url)

        @app.task
        async def double(x: int) -> int:
            return 2 * x

        return app, double

    # Given a job on the primary, replicated to the replica
    primary_app, on_primary = build(primary.url)
    async with primary_app:
        job_id = (await on_primary.enqueue(21)).id
    await wait_until(lambda: replicated(replica, f"*{job_id}*"), 30, what="replication")

    replica_app, on_replica = build(replica.url)
    async with replica_app:
        # When a producer writes to the replica: a typed, transient error
        with pytest.raises(RedisReadOnly) as refused:
            await on_replica.enqueue(1)
        assert classify(refused.value) is ErrorKind.TRANSIENT
        # When a worker runs against the replica
        async with running(replica_app) as supervisor:
            # Then it keeps retrying (the server counts the refusals)...
            await wait_until(lambda: readonly_errors(replica) >= 20, 60,
                             what="20 READONLY refusals")
            # ...with one warning line, no traceback, nothing run
            assert len(worker_warnings(caplog, "RedisReadOnly")) == 1
            assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
            assert supervisor.counters["started"] == 0
            # When the replica is promoted (a failover), the same worker runs the job
            with redis.Redis.from_url(replica.url) as admin:
                admin.execute_command("REPLICAOF", "NO", "ONE")
            assert await replica_app.job(job_id).result(timeout=30) == 42


@pytest.fixture
def slow_loading_server(server_binary: ServerBinary,
                        tmp_path: Path) -> Iterator[ServerProcess]:
    """A server with AOF that takes 100 us per key to load at start-up."""
    server = ServerProcess(server_binary, directory=tmp_path / "redis", appendonly=True,
                           extra_args=["--key-load-delay", "100"])
    server.start()
    try:
        yield server
    finally:
        server.close()


def restart_without_waiting(server: ServerProcess) -> None:
    """Stop (AOF flushed) and start again, returning while it still loads."""
    server.stop()
    server.process = subprocess.Popen(server.command(), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, cwd=server.directory)


async def test_worker_rides_out_loading_after_a_restart(
    slow_loading_server: ServerProcess, make_app: Callable[..., aioqueue.App],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "aioqueue")
    server = slow_loading_server
    with redis.Redis.from_url(server.url) as client, client.pipeline() as pipe:
        for i in range(50_000):  # about 5 s of LOADING at start-up
            pipe.set(f"filler:{i}", i)
        pipe.execute()
    app = make_app(server.url)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    async with app, running(app) as supervisor:
        # Given a worker, When Redis restarts and loads its data set
        restart_without_waiting(server)
        # Then the worker meets LOADING, says so once, and backs off
        await wait_until(lambda: worker_warnings(caplog, "RedisLoading"), 60,
                         what="the worker's LOADING warning")
        await anyio.to_thread.run_sync(server.wait_ready, 60.0)
        # and runs jobs once the data set is loaded
        jobs = [await double.enqueue(i) for i in range(5)]
        assert [await j.result(timeout=30) for j in jobs] == [0, 2, 4, 6, 8]
        assert supervisor.counters["succeeded"] == 5
    assert len(worker_warnings(caplog, "RedisLoading")) == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_error_policy_classifies_settle_paths_oom_as_transient() -> None:
    oom = RedisOutOfMemory("OOM command not allowed")
    assert classify(oom) is ErrorKind.PERMANENT
    assert classify(oom, oom_transient=True) is ErrorKind.TRANSIENT
    assert classify(WrongKeyType("x")) is ErrorKind.PERMANENT
    assert classify(RedisUnavailable("x")) is ErrorKind.TRANSIENT
    assert classify(ValueError("a bug")) is ErrorKind.PERMANENT
