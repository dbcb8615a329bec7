"""Floor: the least a Redis list queue can do, with plain redis-py.

Producer: RPUSH a JSON payload onto ``floor:wait``. Consumer: ``concurrency`` coroutines, each
BLMOVE wait->active, run the body, LREM the payload from active. No leases, no results, no
retries, no delays: the numbers are a floor on per-job cost, not a usable queue.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aredis
from _common import Adapter, body, main

WAIT = "floor:wait"
ACTIVE = "floor:active"


class Floor(Adapter):
    name = "floor"
    dists = ()
    has_batch = True
    has_result = False
    has_delay = False
    notes = {
        "rt": "the floor loop stores no results",
        "delay": "the floor loop has no delayed jobs",
    }

    async def open(self, url: str) -> None:
        self.r = aredis.Redis.from_url(url)

    async def close(self) -> None:
        await self.r.aclose()

    async def enqueue(self, job_no: int, ref: float, delay: float | None = None) -> Any:
        await self.r.rpush(WAIT, json.dumps({"n": job_no, "ref": ref}))

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        await self.r.rpush(WAIT, *[json.dumps({"n": n, "ref": ref}) for n, ref in items])

    async def run_worker(self, url: str, concurrency: int) -> None:
        r = aredis.Redis.from_url(url, max_connections=concurrency + 10)

        async def lane() -> None:
            while True:
                raw = await r.blmove(WAIT, ACTIVE, 1, "LEFT", "RIGHT")
                if raw is None:
                    continue
                msg = json.loads(raw)
                await body(msg["n"], msg["ref"])
                await r.lrem(ACTIVE, 1, raw)

        await asyncio.gather(*(lane() for _ in range(concurrency)))


if __name__ == "__main__":
    main(Floor())
