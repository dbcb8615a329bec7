"""SAQ driver (runs in benchmarks/.venvs/saq)."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aredis
from _common import QUEUE, Adapter, body, main
from saq import Queue, Worker
from saq.queue.redis import RedisQueue


async def incr(ctx: Any, *, job_no: int, ref: float) -> int:
    return await body(job_no, ref)


class Saq(Adapter):
    name = "saq"
    dists = ("saq",)
    notes = {
        "batch": "no batch enqueue API (Queue.batch() only groups aborts)",
        "general": "defaults except concurrency=100; result wait is Job.refresh(until_complete=)"
        " (pub/sub; Queue.apply() polls every 0.5 s instead); delay via scheduled=<epoch s>, "
        "picked up by the worker's schedule timer (default every 1 s). The worker's redis "
        "pool is raised to concurrency+50 connections: with the default 100 (redis-py 8) and "
        "concurrency 100 the timers fail with MaxConnectionsError and delayed jobs never run.",
    }

    async def open(self, url: str) -> None:
        self.q = Queue.from_url(url, name=QUEUE)
        await self.q.connect()

    async def close(self) -> None:
        await self.q.disconnect()

    async def enqueue(self, job_no: int, ref: float, delay: float | None = None) -> Any:
        kw: dict[str, Any] = {}
        if delay:
            kw["scheduled"] = time.time() + delay
        return await self.q.enqueue("incr", job_no=job_no, ref=ref, **kw)

    async def wait_result(self, handle: Any, timeout: float) -> Any:
        await handle.refresh(until_complete=timeout)
        return handle.result

    async def run_worker(self, url: str, concurrency: int) -> None:
        # Queue.from_url() gets redis-py 8's default pool of 100 connections; with 100
        # dequeuers blocked in BLMOVE the schedule/sweep timers then fail with
        # MaxConnectionsError, so a user at concurrency 100 has to pass a bigger pool.
        q = RedisQueue(aredis.from_url(url, max_connections=concurrency + 50), name=QUEUE)
        w = Worker(q, functions=[incr], concurrency=concurrency)
        await w.start()


if __name__ == "__main__":
    main(Saq())
