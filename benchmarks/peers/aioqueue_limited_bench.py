"""aioqueue with a rate limiter configured but never hit (#13 item 6).

The same driver as ``aioqueue_bench.py``, but the benchmark task has a
1,000,000/s limit with a burst of 100,000 (far above any drain rate here), so
every claim runs the limiter's code path (limit and state reads, a state
write) without ever holding a job back. Compare its drain columns with
``aioqueue``'s in the same run:
``python -m benchmarks --peers aioqueue,aioqueue_limited``.
"""

from __future__ import annotations

from typing import Any

from _common import QUEUE, main
from aioqueue_bench import Aioqueue, build

import aioqueue
from aioqueue.broker_flow import FlowLimits
from aioqueue.flow import RateLimit

LIMIT = RateLimit(1_000_000, 1.0, burst=100_000)


async def declare(app: aioqueue.App, task: Any) -> None:
    await FlowLimits(app.broker.lane, app.prefix).declare(QUEUE, {task.name: LIMIT})


class AioqueueLimited(Aioqueue):
    name = "aioqueue_limited"
    notes = {**Aioqueue.notes, "general": Aioqueue.notes["general"] + " The task has a "
             "rate limit of 1,000,000/s (burst 100,000) that no phase reaches."}

    async def open(self, url: str) -> None:
        await super().open(url)
        await declare(self.app, self.task)

    async def run_worker(self, url: str, concurrency: int) -> None:
        app, task = build(url)
        async with app:
            await declare(app, task)
        await aioqueue.Supervisor(app, queues=[QUEUE], concurrency=concurrency).run()


if __name__ == "__main__":
    main(AioqueueLimited())
