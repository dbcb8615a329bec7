"""Drain of one sharded queue on a local 3-primary cluster vs one unsharded
queue on a single server, side by side in one run.

Usage: ``python -m benchmarks.sharded_drain [--jobs 20000] [--shards 6]
[--processes 1 2] [--rounds 3]``

Each round pauses the queue, enqueues ``--jobs`` no-op jobs (``enqueue_many``:
on the sharded queue each chunk is split by shard), starts
``aioqueue worker --processes N`` (it learns the shard count from Redis),
resumes the queue once every worker's heartbeat is in, and times until the
queue's ``succeeded`` counter has grown by ``--jobs``: the drain alone, not
the interpreter start-up or a burst-mode exit. The best round of each set-up is
reported (and, to tell the cluster's cost from sharding's, the same queue
unsharded on the cluster), with how the shards' slots fall on the cluster's primaries (the
tags ``{default#0}`` ... are placed by CRC16, so a few shards may share a
primary). One worker process is one core of Python: the single server is
rarely the limit below a few processes, so on a small machine this measures
the cost of sharding more than its gain.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import anyio

from aioqueue.broker_admin import BrokerAdmin
from aioqueue.broker_workers import WorkerRegistry, WorkerState
from aioqueue.server import ServerProcess, default_server_binary
from tests.harness.cluster import LocalCluster
from tests.processes_app import build

REPO = Path(__file__).resolve().parent.parent
QUEUE = "default"  # the queue of tests.processes_app


def start_worker(url: str, processes: int, concurrency: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aioqueue", "--log-level", "WARNING", "worker",
         "tests.processes_app:app", "--url", url, "--processes", str(processes),
         "--concurrency", str(concurrency)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


async def one_round(url: str, jobs: int, shards: int, processes: int,
                    concurrency: int) -> tuple[float, float]:
    """Enqueue ``jobs`` no-op jobs into the paused queue, start the workers,
    resume once they are up, and time until every job succeeded. Returns the
    enqueue and drain rates (jobs/s)."""
    app = build(url)
    app.queue_shards = {QUEUE: shards} if shards > 1 else {}
    async with app:
        admin = BrokerAdmin(app.broker.lane, app.prefix, app.broker.shards)
        registry = WorkerRegistry(app.broker.lane, app.prefix)
        await admin.pause(QUEUE)
        task = app.tasks["quick"]
        started = time.perf_counter()
        for start in range(0, jobs, 1000):
            await task.enqueue_many([task.bind(n) for n in range(start, min(jobs, start + 1000))])
        enqueue_rate = jobs / (time.perf_counter() - started)
        before = (await app.queue_info(QUEUE)).get("succeeded", 0)
        worker = start_worker(url, processes, concurrency)
        try:
            with anyio.fail_after(60):
                while len([w for w in (await registry.workers(limit=1000))[0]
                           if w.state is WorkerState.ALIVE]) < processes:
                    await anyio.sleep(0.05)
            started = time.perf_counter()
            await admin.resume(QUEUE)
            while (await app.queue_info(QUEUE)).get("succeeded", 0) - before < jobs:
                await anyio.sleep(0.02)
            drain_rate = jobs / (time.perf_counter() - started)
        finally:
            worker.terminate()
            worker.wait(60)
        for info in (await registry.workers(limit=1000))[0]:
            await registry.remove(info.id)
    return enqueue_rate, drain_rate


def measure(url: str, jobs: int, shards: int, processes: int, concurrency: int,
            rounds: int) -> tuple[float, float]:
    """Best enqueue and drain rates (jobs/s) over ``rounds``."""
    results = [anyio.run(one_round, url, jobs, shards, processes, concurrency)
               for _ in range(rounds)]
    return max(r[0] for r in results), max(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--shards", type=int, default=6)
    parser.add_argument("--processes", type=int, nargs="+", default=[1])
    parser.add_argument("--concurrency", type=int, default=50,
                        help="per worker process (default 50)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = default_server_binary()
    results: dict[int, list[tuple[float, float]]] = {}
    with ServerProcess(binary) as server:
        for processes in args.processes:
            results[processes] = [measure(server.url, args.jobs, 1, processes,
                                          args.concurrency, args.rounds)]
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(binary, Path(tmp)) as cluster:
        placement = Counter(cluster.key_owner(f"{{{QUEUE}#{i}}}").port
                            for i in range(args.shards))
        for processes in args.processes:
            # the same queue unsharded on the cluster first (one slot, one
            # primary): it tells the cluster's cost from sharding's
            for shards in (1, args.shards):
                results[processes].append(measure(cluster.url, args.jobs, shards, processes,
                                                  args.concurrency, args.rounds))
    print(f"{binary.kind} {binary.version}, {args.jobs} jobs, best of {args.rounds}, "
          f"concurrency {args.concurrency} per process, {os.cpu_count()} cores")
    print(f"cluster: 3 primaries, {args.shards} shards; shards per primary (port): "
          + ", ".join(f"{port}: {n}" for port, n in sorted(placement.items())))
    for processes, rows in results.items():
        (single_enq, single_drain), (one_enq, one_drain), (shard_enq, shard_drain) = rows
        print(f"processes={processes}  drain: single server unsharded {single_drain:9,.0f}/s  "
              f"cluster sharded {shard_drain:9,.0f}/s (ratio {shard_drain / single_drain:4.2f}; "
              f"cluster unsharded {one_drain:9,.0f}/s)  enqueue_many: {single_enq:9,.0f}/s  "
              f"{shard_enq:9,.0f}/s ({one_enq:9,.0f}/s)", flush=True)


if __name__ == "__main__":
    main()
