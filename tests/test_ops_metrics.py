"""Prometheus metrics (issue 11): a worker's own endpoint, read from memory,
and queue gauges from Redis served by the dashboard process."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("starlette")

from starlette.testclient import TestClient

import aioqueue
from aioqueue.cli_workers import worker_metrics
from aioqueue.dashboard import create_dashboard
from aioqueue.metrics import WorkerSample, serve_worker_metrics

from . import ops_app
from .conftest import running
from .fault_app import build_app
from .helpers import wait_until
from .test_processes import ParentProcess


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


def _sample(text: str, name: str) -> float:
    """The value of the one sample line that starts with ``name`` (a metric
    name with its labels, as exposed)."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name + " ")]
    assert len(values) == 1, f"{name}: {values}\n{text}"
    return values[0]


def _series(name: str, **labels: str) -> str:
    """A sample's name as exposed (labels in name order)."""
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


async def _scrape(port: int) -> str:
    return await anyio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/metrics")


async def test_worker_metrics_count_jobs_by_task_and_outcome_with_run_time_histograms(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)

    @app.task(name="ok")
    async def ok(x: int) -> int:
        return x

    @app.task(name="flaky", max_tries=2)
    async def flaky(ctx: aioqueue.JobContext) -> str:
        if ctx.attempt == 1:
            raise ValueError("once")
        return "done"

    @app.task(name="broken", max_tries=1)
    async def broken() -> None:
        raise KeyError("never works")

    port = _free_port()
    async with app, running(app) as supervisor:
        stop = worker_metrics(supervisor, port)
        try:
            for n in range(3):
                assert await (await ok.enqueue(n)).result(timeout=10) == n
            assert await (await flaky.enqueue()).result(timeout=10) == "done"
            with pytest.raises(aioqueue.JobFailed):
                await (await broken.enqueue()).result(timeout=10)
            text = await _scrape(port)
        finally:
            stop()
    def jobs(task: str, outcome: str) -> float:
        return _sample(text, _series("aioqueue_worker_jobs_total", queue=queue_name, task=task,
                                     outcome=outcome))

    assert jobs("ok", "succeeded") == 3
    assert jobs("flaky", "retried") == 1 and jobs("flaky", "succeeded") == 1
    assert jobs("broken", "failed") == 1
    ok_series = {"queue": queue_name, "task": "ok", "outcome": "succeeded"}
    duration = "aioqueue_worker_job_duration_seconds"
    assert _sample(text, _series(f"{duration}_count", **ok_series)) == 3
    assert _sample(text, _series(f"{duration}_bucket", **ok_series, le="+Inf")) == 3
    assert _sample(text, _series(f"{duration}_bucket", **ok_series, le="3600.0")) == 3
    assert _sample(text, _series(f"{duration}_sum", **ok_series)) < 30
    assert _sample(text, "aioqueue_worker_claims_total") >= 1
    assert "job_id" not in text and "worker_id" not in text


async def test_worker_metrics_count_renewals_recovered_orphans_and_loop_lag(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name)
    port = _free_port()

    @app.task(name="long")
    async def long(ctx: aioqueue.JobContext) -> str:
        # runs until the renewer extended its lease at least once
        await wait_until(lambda: supervisor.counters["renewed"] >= 1, 10, what="a renewal")
        return "renewed"

    @app.task(name="block")
    async def block(seconds: float) -> None:
        time.sleep(seconds)  # blocks the event loop on purpose

    async with app:
        # a job leased by a worker that died: its lease (50 ms) runs out
        orphan = await app.enqueue("long")
        async with app.broker.blocking_client("dead") as lane:
            (taken, *_), _ = await app.broker.claim(lane, queue_name, 1, 50, "dead-worker")
        assert taken.id == orphan.id
        async with running(app) as supervisor:
            stop = worker_metrics(supervisor, port)
            try:
                assert await orphan.result(timeout=10) == "renewed"
                await (await app.enqueue("block", 0.3)).result(timeout=10)
                await wait_until(lambda: supervisor.lag_monitor.max_lag_s >= 0.2, 10,
                                 what="the stall measured")
                text = await _scrape(port)
            finally:
                stop()
    assert _sample(text, "aioqueue_worker_orphans_recovered_total") == 1
    assert _sample(text, "aioqueue_worker_leases_renewed_total") >= 1
    assert _sample(text, "aioqueue_worker_renew_calls_total") >= 1
    assert _sample(text, "aioqueue_worker_loop_lag_seconds") >= 0.2


async def test_a_port_in_use_is_served_once_it_is_free() -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        sample = WorkerSample(counters={}, running=0, concurrency=7, loop_lag_s=0.0)
        stop = serve_worker_metrics(lambda: sample, port, addr="127.0.0.1", retry_s=0.05)
    try:  # the holder (a replaced child still draining) is gone now
        text = await wait_until(lambda: _try_scrape(port), 10, what="served after the retry")
        assert "aioqueue_worker_concurrency 7.0" in text
    finally:
        stop()


def _try_scrape(port: int) -> str:
    try:
        text = _get(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return ""
    return text if "aioqueue_worker_concurrency" in text else ""


def _free_port_pair() -> int:
    """A port P with P + 1 free too (for two children)."""
    for _ in range(50):
        port = _free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two adjacent free ports")


async def test_processes_serve_metrics_on_consecutive_ports(
        redis_url: str, tmp_path: Path) -> None:
    port = _free_port_pair()
    parent = ParentProcess(redis_url, "--processes", "2", "--metrics-port", str(port),
                           env={"AQ_HISTORY": str(tmp_path / "history")})
    try:
        await wait_until(lambda: parent.ready_children() == 2, 30, what="two children up")
        # each child serves its own port: port + slot
        texts = [await wait_until(lambda p=p: _try_scrape(p), 20, what=f"metrics on {p}")
                 for p in (port, port + 1)]
        assert "in use" not in parent.output, parent.output
        app = build_app(redis_url)
        async with app:
            jobs = [await app.enqueue("quick", n) for n in range(20)]
            assert [await j.result(timeout=30) for j in jobs] == [n * 2 for n in range(20)]

        async def total() -> float:
            texts[:] = [await _scrape(p) for p in (port, port + 1)]
            return sum(_sample(t, "aioqueue_worker_jobs_succeeded_total") for t in texts)

        # the two children ran the 20 jobs between them, each counted once
        await wait_until(lambda: _equals(total, 20), 10, what="20 jobs over both ports")
    finally:
        parent.close()


async def _equals(read: Callable[[], Awaitable[float]], want: float) -> bool:
    return await read() == want
