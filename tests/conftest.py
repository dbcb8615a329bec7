"""Fixtures: real server processes on free loopback ports, fresh per test."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

import aioqueue
from aioqueue.server import ServerBinary, ServerProcess, find_server_binaries

from .harness.cluster import LocalCluster
from .harness.sentinel import LocalSentinel

REPO = Path(__file__).resolve().parent.parent

FAST = aioqueue.WorkerSettings(
    lease_s=1.0,
    renew_interval_s=0.25,
    reaper_interval_s=0.05,
    reaper_grace_s=0.0,
    block_s=0.2,
    shutdown_grace_s=1.0,
    burst_horizon_s=0.5,
    reconnect_cap_s=0.2,
    max_deliveries=5,
)

BINARIES = find_server_binaries()


def pytest_report_header() -> list[str]:
    return [f"servers: {', '.join(f'{b.kind} {b.version} ({b.path})' for b in BINARIES)}"]


@pytest.fixture(scope="session", params=BINARIES, ids=[f"{b.kind}{b.version}" for b in BINARIES])
def server_binary(request: pytest.FixtureRequest) -> ServerBinary:
    binary: ServerBinary = request.param
    return binary


@pytest.fixture(scope="session")
def shared_server(server_binary: ServerBinary) -> Iterator[ServerProcess]:
    with ServerProcess(server_binary) as server:
        yield server


@pytest.fixture
def redis_url(shared_server: ServerProcess, request: pytest.FixtureRequest) -> str:
    """A flushed server for this test (with ``--topology cluster`` or
    ``sentinel``: the URL of a flushed local cluster or Sentinel set-up)."""
    topology = request.config.getoption("topology")
    if topology == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    if topology == "sentinel":
        sentinel: LocalSentinel = request.getfixturevalue("redis_sentinel")
        return sentinel.url
    if shared_server.process is None or shared_server.process.poll() is not None:
        shared_server.start()
    with redis.Redis.from_url(shared_server.url) as client:
        client.flushall()
        client.script_flush()
    return shared_server.url


@pytest.fixture
def own_server(server_binary: ServerBinary, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server only this test uses: it may kill, pause or restart it."""
    server = ServerProcess(server_binary, directory=tmp_path / "redis", appendonly=True,
                           appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def queue_name() -> str:
    return "q" + uuid.uuid4().hex[:8]


@pytest.fixture
def make_app(redis_url: str) -> Callable[..., aioqueue.App]:
    def factory(url: str | None = None, **kwargs: Any) -> aioqueue.App:
        kwargs.setdefault("worker", FAST)
        kwargs.setdefault("retry", aioqueue.RetryPolicy(backoff_s=0.05, backoff_max_s=0.2))
        return aioqueue.App(url or redis_url, **kwargs)

    return factory


@contextlib.asynccontextmanager
async def running(
    app: aioqueue.App, **kwargs: Any
) -> AsyncIterator[aioqueue.Supervisor]:
    """Run a supervisor in the background for the body of the block."""
    kwargs.setdefault("concurrency", 20)
    supervisor = aioqueue.Supervisor(app, **kwargs)
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        try:
            yield supervisor
        finally:
            supervisor.request_shutdown()


def worker_process(
    app_target: str, url: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``aioqueue worker`` in a subprocess (for crash and signal tests)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "aioqueue", "worker", app_target, "--url", url, *extra],
        env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=REPO,
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--topology", choices=["single", "cluster", "sentinel"],
        default=os.environ.get("AIOQUEUE_TEST_TOPOLOGY", "single"),
        help="what redis_url (and so make_app) points at: one server (default), a "
             "local 3-primary cluster, or a primary behind three Sentinels")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "single_server: needs redis_url to be one plain server (it inspects or "
        "cuts that server's clients directly); skipped under --topology cluster/sentinel")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    topology = config.getoption("topology")
    if topology == "single":
        return
    skip = pytest.mark.skip(reason=f"needs one plain server, not --topology {topology}")
    for item in items:
        if item.get_closest_marker("single_server"):
            item.add_marker(skip)


# -- Redis Cluster and Sentinel on loopback (tests/harness/cluster.py, sentinel.py) --------
# Six (or five) server processes each: only the tests that ask for them start them.

@pytest.fixture(scope="session")
def shared_cluster(
    server_binary: ServerBinary, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    with LocalCluster(server_binary, tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(shared_cluster: LocalCluster) -> LocalCluster:
    """A healthy, flushed 3-primary / 3-replica cluster, shared by the tests
    that do not break it (those use ``own_cluster``)."""
    shared_cluster.wait_healthy()
    shared_cluster.flush()
    return shared_cluster


@pytest.fixture
def own_cluster(server_binary: ServerBinary, tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster only this test uses: it may kill, pause or fail over nodes."""
    with LocalCluster(server_binary, tmp_path / "cluster") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def shared_sentinel(
    server_binary: ServerBinary, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalSentinel]:
    with LocalSentinel(server_binary, tmp_path_factory.mktemp("sentinel")) as sentinel:
        yield sentinel


@pytest.fixture
def redis_sentinel(shared_sentinel: LocalSentinel) -> LocalSentinel:
    """A flushed primary behind three Sentinels, shared by the tests that do
    not fail it over (those use ``own_sentinel``)."""
    with redis.Redis(host="127.0.0.1", port=shared_sentinel.current_primary().port) as client:
        client.flushall()
        client.script_flush()
    return shared_sentinel


@pytest.fixture
def own_sentinel(server_binary: ServerBinary, tmp_path: Path) -> Iterator[LocalSentinel]:
    """A primary, a replica and three Sentinels only this test uses."""
    with LocalSentinel(server_binary, tmp_path / "sentinel") as sentinel:
        yield sentinel
