"""Network partitions between a worker and Redis, at the network level (a
network namespace and a veth pair whose host end goes down, or nftables drop
rules inside the namespace), beside the process and proxy faults of the other
fault tests. Added delay goes through the TCP fault proxy instead
(tests/test_degraded_network.py): this kernel has no ``netem``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from aioqueue.server import ServerBinary, ServerProcess

from .conftest import REPO
from .fault_app import build_app
from .harness.checker import check, read_history, snapshot
from .harness.netns import Partitionable, nft_unavailable_reason, unavailable_reason
from .helpers import History, WorkerProcess, wait_until

NFT_REASON = nft_unavailable_reason()
needs_nft = pytest.mark.skipif(NFT_REASON is not None, reason=NFT_REASON or "")

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


class NamespacedWorker:
    """``aioqueue worker`` inside a network namespace, output drained."""

    def __init__(self, net: Partitionable, url: str, env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            net.command(sys.executable, "-m", "aioqueue", "worker", "tests.fault_app:app",
                        "--url", url),
            env={**os.environ, "PYTHONPATH": str(REPO), **env}, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        self._reader.join(5)


@pytest.fixture
def net() -> Iterator[Partitionable]:
    with Partitionable() as partitionable:
        yield partitionable


@pytest.fixture
def server(server_binary: ServerBinary, net: Partitionable,
           tmp_path: Path) -> Iterator[ServerProcess]:
    """A server the namespace reaches at ``net.host_ip`` (and the host at 127.0.0.1)."""
    with ServerProcess(server_binary, directory=tmp_path / "redis",
                       extra_args=["--bind", "127.0.0.1", net.host_ip]) as process:
        yield process


@pytest.mark.timeout(120)
async def test_partition_longer_than_the_lease_redelivers_and_the_old_run_stops(
        net: Partitionable, server: ServerProcess, tmp_path: Path) -> None:
    """The worker that runs a job is cut off for longer than the lease: another
    worker gets the job after the lease expires and finishes it; the cut-off
    run stops by its own lease clock and, once the link is back, nothing of it
    lands (the job keeps the second worker's result); nothing is lost."""
    history = History(tmp_path / "history")
    env = {**history.env, "AQ_LEASE": "1.0", "AQ_SOCKET_TIMEOUT": "0.5"}
    inside = NamespacedWorker(net, f"redis://{net.host_ip}:{server.port}/0", env)
    outside: WorkerProcess | None = None
    try:
        app = build_app(server.url)
        async with app:
            job = await app.enqueue("slow", 4.0, "cut")
            first = (await wait_until(lambda: history.starts("cut"), 30,
                                      what=f"the job to start; output:\n{inside.output}"))[0]
            assert first == inside.popen.pid  # the namespaced worker runs it
            net.cut()
            outside = WorkerProcess("tests.fault_app:app", server.url, env=env)
            result = await job.result(timeout=30)
            second = outside.pid
            assert result == f"cut:{second}"
            net.heal()
            others = [await app.enqueue("quick", n) for n in range(10)]
            assert [await j.result(timeout=30) for j in others] == [n * 2 for n in range(10)]
            # the cut-off run never finished: its lease clock stopped it
            assert history.ends("cut") == [second]
            assert await job.result(timeout=1) == f"cut:{second}"
        for worker in (inside.popen, outside.popen):
            worker.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            while inside.popen.poll() is None or outside.popen.poll() is None:
                await anyio.sleep(0.05)
        assert inside.popen.returncode == 0, inside.output
        assert outside.popen.returncode == 0, outside.output
    finally:
        net.heal()
        inside.close()
        if outside is not None:
            outside.close()


@pytest.mark.timeout(120)
async def test_flapping_link_loses_no_job(net: Partitionable, server: ServerProcess,
                                          tmp_path: Path) -> None:
    """The only worker's link goes down and up every 0.3–0.8 s while jobs
    are enqueued: every job ends, once the link stays up."""
    env = {"AQ_LEASE": "2.0", "AQ_SOCKET_TIMEOUT": "0.5"}
    inside = NamespacedWorker(net, f"redis://{net.host_ip}:{server.port}/0", env)
    try:
        app = build_app(server.url)
        async with app:
            jobs = []
            for flap in range(8):
                jobs += [await app.enqueue("quick", flap * 100 + n) for n in range(25)]
                net.cut()
                await anyio.sleep(0.3 + 0.5 * (flap % 2))
                net.heal()
                await anyio.sleep(0.3)
            results = [await job.result(timeout=60) for job in jobs]
            assert results == [(f * 100 + n) * 2 for f in range(8) for n in range(25)]
        inside.popen.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            while inside.popen.poll() is None:
                await anyio.sleep(0.05)
        assert inside.popen.returncode == 0, inside.output
    finally:
        net.heal()
        inside.close()


async def stop(*workers: subprocess.Popen[str]) -> None:
    """SIGTERM, then wait for every worker to exit 0."""
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    with anyio.fail_after(30):
        while any(w.poll() is None for w in workers):
            await anyio.sleep(0.05)


@needs_nft
@pytest.mark.timeout(120)
async def test_one_way_partition_replies_lost_longer_than_the_lease(
        net: Partitionable, server: ServerProcess, tmp_path: Path) -> None:
    """Packets from Redis to the worker that runs a 4 s job are dropped
    (lease 1 s) until the job has completed elsewhere, while the worker's
    requests still arrive and run (renewals, claims): it hears no reply, so
    its lease clock stops the run; the job completes once, every extra
    delivery is explained by a lease expiry, and after the heal the worker
    runs jobs again."""
    history_dir = tmp_path / "history"
    history_dir.mkdir()
    env = {"AQ_HISTORY_DIR": str(history_dir), "AQ_LEASE": "1.0", "AQ_SOCKET_TIMEOUT": "0.5"}
    inside = NamespacedWorker(net, f"redis://{net.host_ip}:{server.port}/0", env)
    outside: WorkerProcess | None = None
    try:
        app = build_app(server.url)
        async with app:
            rec = app.get_task("rec")
            job = await rec.enqueue(n=1, seconds=4.0)
            await wait_until(lambda: read_history(history_dir), 30,
                             what=f"the job to start; output:\n{inside.output}")
            net.drop(replies=True)
            outside = WorkerProcess("tests.fault_app:app", server.url, env=env)
            assert await job.result(timeout=30) == 1
            assert net.dropped_packets() > 0
            net.drop()
            others = [await rec.enqueue(n=n) for n in range(10, 20)]
            assert [await j.result(timeout=30) for j in others] == list(range(10, 20))
            await stop(inside.popen, outside.popen)
            assert inside.popen.returncode == 0, inside.output
            assert outside.popen.returncode == 0, outside.output
            acked = [job.id, *(j.id for j in others)]
            snap = await snapshot(app.broker.client, "aioqueue", "default")
            report = check(acked, read_history(history_dir), snap)
            report.assert_ok()
            # the inside run started before the cut and never completed
            inside_runs = [r for r in read_history(history_dir)
                           if r.job_id == job.id and r.pid == inside.popen.pid]
            assert [r.kind for r in inside_runs][:1] == ["start"]
    finally:
        net.drop()
        inside.close()
        if outside is not None:
            outside.close()


@needs_nft
@pytest.mark.timeout(120)
async def test_real_packet_loss_on_the_workers_link_loses_no_job(
        net: Partitionable, server: ServerProcess, tmp_path: Path) -> None:
    """30% of the packets between the only worker and Redis are dropped both
    ways (the kernel's TCP retransmits them): a batch of jobs, a few of them
    longer than the lease, all complete; nothing lost, no job completed twice,
    every extra delivery explained."""
    history_dir = tmp_path / "history"
    history_dir.mkdir()
    env = {"AQ_HISTORY_DIR": str(history_dir), "AQ_LEASE": "5.0"}
    net.drop(loss_percent=30)
    inside = NamespacedWorker(net, f"redis://{net.host_ip}:{server.port}/0", env)
    try:
        app = build_app(server.url)
        async with app:
            rec = app.get_task("rec")
            jobs = [await rec.enqueue(n=n, seconds=6.0 if n % 10 == 0 else 0.0)
                    for n in range(30)]
            assert [await j.result(timeout=60) for j in jobs] == list(range(30))
            assert net.dropped_packets() > 0
            net.drop()
            await stop(inside.popen)
            assert inside.popen.returncode == 0, inside.output
            snap = await snapshot(app.broker.client, "aioqueue", "default")
            check([j.id for j in jobs], read_history(history_dir), snap).assert_ok()
    finally:
        net.drop()
        inside.close()
