"""Micro-benchmark: EVALSHA round trips through aioqueue's command lane vs a
plain redis-py client on a blocking pool (what the broker used before the lane).

    python -m benchmarks.lane                 # starts its own server, ~5 s
    python -m benchmarks.lane --url redis://127.0.0.1:6379/0 --calls 20000

Each client sends ``--calls`` EVALSHA calls of a one-line script from
``--concurrency`` tasks over ``--connections`` connections, three rounds; the
best round counts (the machine is shared). Results go in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis

from aioqueue.lane import CommandLane
from aioqueue.server import ServerProcess

SCRIPT = "return ARGV[1]"


async def rate(call: Callable[[], Awaitable[object]], calls: int, concurrency: int) -> float:
    """Calls per second of ``call`` run ``calls`` times by ``concurrency`` tasks."""
    per_task = calls // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            await call()

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    return per_task * concurrency / (time.perf_counter() - start)


async def measure(url: str, calls: int, concurrency: int, connections: int,
                  rounds: int) -> dict[str, float]:
    client = Redis(connection_pool=BlockingConnectionPool.from_url(
        url, decode_responses=True, max_connections=connections, timeout=None))
    sha = await client.script_load(SCRIPT)
    lane = CommandLane(ConnectionPool.from_url(url, decode_responses=True).make_connection,
                       size=connections, timeout_s=5.0, retries=3)
    contenders: dict[str, Callable[[], Awaitable[object]]] = {
        "redis-py pool": lambda: client.evalsha(sha, 0, "x"),  # type: ignore[no-untyped-call]
        "lane": lambda: lane.execute("EVALSHA", sha, 0, "x"),
    }
    best = dict.fromkeys(contenders, 0.0)
    try:
        for _ in range(rounds):
            for name, call in contenders.items():
                best[name] = max(best[name], await rate(call, calls, concurrency))
    finally:
        await lane.close()
        await client.aclose()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing server (default: start one)")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = None if args.url else ServerProcess()
    if server is not None:
        server.start()
    try:
        url = args.url or (server.url if server else "")
        best = asyncio.run(measure(url, args.calls, args.concurrency, args.connections,
                                   args.rounds))
    finally:
        if server is not None:
            server.close()
    print(f"{args.calls} EVALSHA calls, {args.concurrency} tasks, "
          f"{args.connections} connections, best of {args.rounds}:")
    for name, per_s in best.items():
        print(f"  {name:14} {per_s:9,.0f} calls/s  {1e6 / per_s:6.1f} us/call")
    print(f"  lane / pool    {best['lane'] / best['redis-py pool']:.2f}x")


if __name__ == "__main__":
    main()
