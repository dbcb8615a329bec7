"""arq driver (runs in benchmarks/.venvs/arq)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from _common import QUEUE, Adapter, body, main
from arq import Worker, create_pool
from arq.connections import RedisSettings


async def incr(ctx: dict[str, Any], job_no: int, ref: float) -> int:
    return await body(job_no, ref)


class Arq(Adapter):
    name = "arq"
    dists = ("arq",)
    notes = {
        "batch": "no batch enqueue API",
        "general": "defaults except max_jobs=100: poll_delay 0.5 s (an idle worker looks at the "
        "queue every 0.5 s, so a new job waits up to 0.5 s); result wait is "
        "Job.result() polling every 0.5 s (its default); delay via _defer_by.",
    }

    async def open(self, url: str) -> None:
        self.pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=QUEUE)

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue(self, job_no: int, ref: float, delay: float | None = None) -> Any:
        kw: dict[str, Any] = {}
        if delay:
            kw["_defer_by"] = timedelta(seconds=delay)
        return await self.pool.enqueue_job("incr", job_no, ref, **kw)

    async def wait_result(self, handle: Any, timeout: float) -> Any:
        return await handle.result(timeout=timeout)

    async def run_worker(self, url: str, concurrency: int) -> None:
        w = Worker(functions=[incr], redis_settings=RedisSettings.from_dsn(url),
                   queue_name=QUEUE, max_jobs=concurrency, handle_signals=False)
        await w.main()


if __name__ == "__main__":
    main(Arq())
