"""aioqueue driver (runs in the bench venv, with the repo installed editable)."""

from __future__ import annotations

from typing import Any

from _common import QUEUE, Adapter, body, main

import aioqueue


def build(url: str) -> tuple[aioqueue.App, Any]:
    app = aioqueue.App(url, queue=QUEUE)

    @app.task
    async def incr(job_no: int, ref: float) -> int:
        return await body(job_no, ref)

    return app, incr


class Aioqueue(Adapter):
    name = "aioqueue"
    dists = ("aioqueue",)
    has_batch = hasattr(aioqueue.Task, "enqueue_many")
    notes = {
        "batch": "this aioqueue build has no Task.enqueue_many",
        "general": "defaults (WorkerSettings(), App(max_connections=50) for the producer) with "
        "Supervisor(concurrency=100) in-process; batch = Task.enqueue_many() (pipelined "
        "chunks of 1000); result wait = Job.result(timeout=); delay via "
        ".options(delay=1.0).",
    }

    async def open(self, url: str) -> None:
        self.app, self.task = build(url)
        await self.app.open()

    async def close(self) -> None:
        await self.app.close()

    async def enqueue(self, job_no: int, ref: float, delay: float | None = None) -> Any:
        t = self.task.options(delay=delay) if delay else self.task
        return await t.enqueue(job_no, ref)

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        await self.task.enqueue_many([self.task.bind(n, ref) for n, ref in items])

    async def wait_result(self, handle: Any, timeout: float) -> Any:
        return await handle.result(timeout=timeout)

    async def run_worker(self, url: str, concurrency: int) -> None:
        app, _ = build(url)
        await aioqueue.Supervisor(app, queues=[QUEUE], concurrency=concurrency).run()


if __name__ == "__main__":
    main(Aioqueue())
