"""Prometheus metrics (issue 11): a worker's own endpoint, read from memory,
and queue gauges from Redis served by the dashboard process."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable

import anyio
import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("starlette")

from starlette.testclient import TestClient

import aioqueue
from aioqueue.cli_workers import worker_metrics
from aioqueue.dashboard import create_dashboard

from . import ops_app
from .conftest import running


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def test_worker_metrics_port_reports_its_counters(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    port = _free_port()
    async with app, running(app, concurrency=9) as supervisor:
        stop = worker_metrics(supervisor, port)
        try:
            assert await (await add.enqueue(1, 2)).result(timeout=10) == 3
            text = await anyio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/metrics")
        finally:
            stop()
    assert "aioqueue_worker_jobs_succeeded_total 1.0" in text
    assert "aioqueue_worker_concurrency 9.0" in text
    assert "aioqueue_worker_jobs_running 0.0" in text


def test_dashboard_serves_queue_metrics_from_redis(redis_url: str) -> None:
    ops_app.app.url = redis_url

    async def seed() -> None:
        async with ops_app.app:
            await ops_app.add.enqueue(1, 2)
            await ops_app.add.options(priority=4).enqueue(3, 4)

    anyio.run(seed)
    token = "metrics-token-0123456789"
    with TestClient(create_dashboard(ops_app.app, token=token, open_app=True)) as client:
        assert client.get("/metrics").status_code == 401
        response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    text = response.text
    assert 'aioqueue_queue_jobs{queue="ops",state="waiting"} 2.0' in text
    assert 'aioqueue_queue_paused{queue="ops"} 0.0' in text
    assert 'aioqueue_queue_oldest_waiting_seconds{queue="ops"}' in text
    # closed label sets only: no job ids anywhere
    assert "job_id" not in text and "worker_id" not in text
