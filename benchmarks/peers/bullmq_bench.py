"""BullMQ (Python package) driver (runs in benchmarks/.venvs/bullmq)."""

from __future__ import annotations

import asyncio
from typing import Any

from _common import QUEUE, Adapter, body, main
from bullmq import Queue, QueueEvents, Worker


async def process(job: Any, token: str) -> int:
    return await body(job.data["n"], job.data["ref"])


class Bullmq(Adapter):
    name = "bullmq"
    dists = ("bullmq",)
    has_batch = True
    notes = {
        "general": "defaults except concurrency=100 (drainDelay 5 s, lockDuration 30 s, "
        "jobs kept after completion as BullMQ defaults); batch = Queue.addBulk(); the "
        "Python package has no waitUntilFinished, so the result wait is a QueueEvents "
        "listener on 'completed:<jobId>' (the documented pattern; one blocking XREAD "
        "connection); delay via opts={'delay': ms}.",
    }

    async def open(self, url: str) -> None:
        self.url = url
        self.q = Queue(QUEUE, {"connection": url})
        self.events: QueueEvents | None = None
        self.waiters: dict[str, asyncio.Future[Any]] = {}

    async def close(self) -> None:
        if self.events is not None:
            await self.events.close()
        await self.q.close()

    async def enqueue(self, job_no: int, ref: float, delay: float | None = None) -> Any:
        opts = {"delay": int(delay * 1000)} if delay else {}
        return await self.q.add("incr", {"n": job_no, "ref": ref}, opts)

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        await self.q.addBulk([{"name": "incr", "data": {"n": n, "ref": ref}} for n, ref in items])

    async def wait_result(self, handle: Any, timeout: float) -> Any:
        # QueueEvents reads from lastEventId "$": it is started once (own connection) and a
        # completion that happened before the listener was attached is caught by getState()
        if self.events is None:
            self.events = QueueEvents(QUEUE, {"connection": self.url})
            await asyncio.sleep(0.1)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(args: Any, _id: Any = None) -> None:
            if not fut.done():
                fut.set_result(args)

        self.events.on(f"completed:{handle.id}", done)
        try:
            if await handle.getState() == "completed":
                return None
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.events.off(f"completed:{handle.id}", done)

    async def run_worker(self, url: str, concurrency: int) -> None:
        w = Worker(QUEUE, process, {"connection": url, "concurrency": concurrency})
        await asyncio.Event().wait()
        await w.close()


if __name__ == "__main__":
    main(Bullmq())
