"""Drain time of one queue with ``aioqueue worker --processes N --burst``.

Usage: ``python -m benchmarks.processes_drain [--jobs 20000] [--processes 1 2]``

Starts its own server, enqueues ``--jobs`` no-op jobs, then runs the worker
CLI in burst mode and times it until the parent exits (every child found the
queue empty). The same run with zero jobs is subtracted: what remains is the
drain, not the interpreter start-up. On a box with fewer cores than
processes the extra processes only add contention.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio

from aioqueue.server import ServerProcess
from tests.processes_app import build

REPO = Path(__file__).resolve().parent.parent


def run_worker(url: str, processes: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "aioqueue", "--log-level", "WARNING", "worker",
         "tests.processes_app:app", "--url", url, "--burst", "--processes", str(processes),
         "--concurrency", "50"],
        check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - started


async def fill(url: str, jobs: int) -> None:
    app = build(url)
    async with app:
        task = app.tasks["quick"]
        for start in range(0, jobs, 1000):
            await task.enqueue_many([task.bind(n) for n in range(start, min(jobs, start + 1000))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with ServerProcess() as server:
        for processes in args.processes:
            empty = run_worker(server.url, processes)
            anyio.run(fill, server.url, args.jobs)
            total = run_worker(server.url, processes)
            drain = total - empty
            print(f"processes={processes} jobs={args.jobs} drain={drain:.2f}s "
                  f"({args.jobs / drain:,.0f} jobs/s; start-up {empty:.2f}s)", flush=True)


if __name__ == "__main__":
    main()
