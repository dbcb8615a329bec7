"""streaQ driver (runs in benchmarks/.venvs/streaq)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from _common import QUEUE, Adapter, body, main
from streaq import Worker


async def incr(job_no: int, ref: float) -> int:
    return await body(job_no, ref)


def build(url: str, concurrency: int = 16) -> tuple[Worker[Any], Any]:
    w: Worker[Any] = Worker(redis_url=url, queue_name=QUEUE, concurrency=concurrency,
                            handle_signals=False)
    return w, w.task()(incr)


class Streaq(Adapter):
    name = "streaq"
    dists = ("streaq", "coredis")
    has_batch = True
    notes = {
        "general": "defaults (asyncio loop, coredis default mode, pickle serializer) except "
        "concurrency=100; batch = Worker.enqueue_many(); result wait = Task.result(); delay "
        "via .start(delay=).",
    }

    async def open(self, url: str) -> None:
        self.worker, self.task = build(url)
        self.stack = contextlib.AsyncExitStack()
        await self.stack.enter_async_context(self.worker)

    async def close(self) -> None:
        await self.stack.aclose()

    async def enqueue(self, job_no: int, ref: float, delay: float | None = None) -> Any:
        t = self.task.enqueue(job_no, ref)
        if delay:
            t = t.start(delay=timedelta(seconds=delay))
        return await t

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        await self.worker.enqueue_many([self.task.enqueue(n, ref) for n, ref in items])

    async def wait_result(self, handle: Any, timeout: float) -> Any:
        return await handle.result(timeout=timedelta(seconds=timeout))

    async def run_worker(self, url: str, concurrency: int) -> None:
        w, _ = build(url, concurrency)
        await w.run_async()


if __name__ == "__main__":
    main(Streaq())
