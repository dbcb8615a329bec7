"""Redis memory per job held back by a rate limit (#13 item 6).

Usage: ``python -m benchmarks.flow_memory [--jobs 20000]``

Starts a private server, enqueues ``--jobs`` jobs of a task limited to 1 per
hour, and measures ``used_memory`` three times: empty, with every job
waiting, and after claims have held every job but one back (moved to the
task's held list). Prints bytes per waiting job and per held-back job.
"""

from __future__ import annotations

import argparse

import anyio
import redis

import aioqueue
from aioqueue.broker_flow import FlowLimits
from aioqueue.flow import RateLimit
from aioqueue.server import ServerProcess, find_server_binaries

QUEUE = "memory"


def used_memory(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.info("memory")["used_memory"])


async def measure(url: str, jobs: int) -> None:
    app = aioqueue.App(url, queue=QUEUE)

    @app.task(name="limited")
    async def limited(n: int) -> int:
        return n

    async with app:
        await FlowLimits(app.broker.lane, app.prefix).declare(
            QUEUE, {"limited": RateLimit(1, 3600.0)})
        empty = used_memory(url)
        await limited.enqueue_many([limited.bind(i) for i in range(jobs)])
        waiting = used_memory(url)
        while (await app.queue_info(QUEUE))["waiting"]:
            await app.broker.claim(app.broker.lane, QUEUE, 100, 60_000, "memory-bench")
        [row] = await FlowLimits(app.broker.lane, app.prefix).limits(QUEUE)
        held = used_memory(url)
    print(f"jobs={jobs} held back={row.held}")
    print(f"waiting job: {(waiting - empty) / jobs:,.0f} bytes (record + wait-list entry)")
    print(f"held-back job: {(held - empty) / row.held:,.0f} bytes (record + held-list entry); "
          f"holding costs {(held - waiting) / row.held:+,.1f} bytes per job vs waiting")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20000)
    args = parser.parse_args()
    with ServerProcess(find_server_binaries()[0]) as server:
        anyio.run(measure, server.url, args.jobs)


if __name__ == "__main__":
    main()
