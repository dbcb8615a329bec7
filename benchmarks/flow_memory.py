"""Redis memory per job held back by a limit (#13 item 6).

Usage: ``python -m benchmarks.flow_memory [--jobs 20000] [--keys 1000]``

Starts a private server and measures ``used_memory`` around two cases:

* rate limit: ``--jobs`` jobs of a task limited to 1 per hour, waiting, then
  after claims have held every job but one back (moved to the task's held
  list);
* concurrency groups: ``--jobs`` jobs of a task with ``max_concurrency=1``
  spread over ``--keys`` concurrency keys, waiting in their keys' lists,
  then after claims have started one job per key (the rest are held back
  by the limit; a held-back grouped job costs what a waiting one does).

Prints bytes per job in each state. Memory is counted, not timed: the
numbers do not depend on a quiet machine.
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


async def claim_all(app: aioqueue.App) -> int:
    """Claim until a claim starts nothing; returns how many started."""
    started = 0
    while True:
        jobs, _ = await app.broker.claim(app.broker.lane, QUEUE, 100, 600_000, "memory-bench")
        if not jobs:
            return started
        started += len(jobs)


async def rate_limited(url: str, jobs: int) -> None:
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
        wait_list = app.broker.keys(QUEUE).wait(0)
        with redis.Redis.from_url(url) as client:
            while client.llen(wait_list):  # each claim holds back what it looks at
                await claim_all(app)
        [row] = await FlowLimits(app.broker.lane, app.prefix).limits(QUEUE)
        held = used_memory(url)
    print(f"rate limit: jobs={jobs} held back={row.held}")
    print(f"  waiting job: {(waiting - empty) / jobs:,.0f} bytes (record + wait-list entry)")
    print(f"  held-back job: {(held - empty) / row.held:,.0f} bytes (record + held-list entry); "
          f"holding costs {(held - waiting) / row.held:+,.1f} bytes per job vs waiting")


async def grouped(url: str, jobs: int, keys: int) -> None:
    app = aioqueue.App(url, queue=QUEUE)

    @app.task(name="grouped", concurrency_key=lambda key, **_: key, max_concurrency=1)
    async def grouped_task(key: str, n: int) -> int:
        return n

    async with app:
        empty = used_memory(url)
        await grouped_task.enqueue_many(
            [grouped_task.bind(f"customer-{i % keys}", i) for i in range(jobs)])
        waiting = used_memory(url)
        started = await claim_all(app)
        held = used_memory(url)
    back = jobs - started
    print(f"concurrency groups: jobs={jobs} keys={keys} running={started} held back={back}")
    print(f"  waiting grouped job: {(waiting - empty) / jobs:,.0f} bytes (record with its "
          f"group + key-list entry, key lists and ring shared by {jobs // keys} jobs each)")
    print(f"  starting one job per key costs {(held - waiting) / started:+,.0f} bytes per key "
          f"(its slot set, the lease, the parked entry)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()
    with ServerProcess(find_server_binaries()[0]) as server:
        anyio.run(rate_limited, server.url, args.jobs)
        with redis.Redis.from_url(server.url) as client:
            client.flushall()
        anyio.run(grouped, server.url, args.jobs, args.keys)


if __name__ == "__main__":
    main()
