"""taskiq + taskiq-redis driver (runs in benchmarks/.venvs/taskiq).

Uses RedisStreamBroker (Redis streams + consumer group, messages XACKed after the result is
saved) with RedisAsyncResultBackend. The worker is taskiq's own Receiver, built the way
``taskiq worker`` builds it, but in this process (the CLI adds a supervisor process).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import QUEUE, Adapter, body, main
from taskiq.receiver import Receiver
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker


def build(url: str) -> tuple[RedisStreamBroker, Any]:
    broker = RedisStreamBroker(url, queue_name=QUEUE).with_result_backend(
        RedisAsyncResultBackend(url, result_ex_time=600)
    )

    @broker.task(task_name="incr")
    async def incr(job_no: int, ref: float) -> int:
        return await body(job_no, ref)

    return broker, incr


class Taskiq(Adapter):
    name = "taskiq"
    dists = ("taskiq", "taskiq-redis")
    has_delay = False
    notes = {
        "batch": "no batch enqueue API",
        "delay": "delays need the separate `taskiq scheduler` process with a schedule source; "
        "the broker itself has no delayed delivery, so not measured",
        "general": "RedisStreamBroker defaults (xread_count 100, block 2 s, ack when saved) "
        "with RedisAsyncResultBackend(result_ex_time=600); Receiver(max_async_tasks=100), "
        "i.e. `taskiq worker --max-async-tasks 100` minus the supervisor process; result wait "
        "= TaskiqTask.wait_result() (polls, default check_interval 0.2 s).",
    }

    async def open(self, url: str) -> None:
        self.broker, self.task = build(url)
        await self.broker.startup()

    async def close(self) -> None:
        await self.broker.shutdown()

    async def after_flush(self) -> None:
        # FLUSHALL dropped the consumer group the producer's startup() created
        await self.broker._declare_consumer_group()

    async def enqueue(self, job_no: int, ref: float, delay: float | None = None) -> Any:
        return await self.task.kiq(job_no, ref)

    async def wait_result(self, handle: Any, timeout: float) -> Any:
        res = await handle.wait_result(timeout=timeout)
        return res.return_value

    async def run_worker(self, url: str, concurrency: int) -> None:
        broker, _ = build(url)
        broker.is_worker_process = True
        with ThreadPoolExecutor() as pool:
            receiver = Receiver(broker=broker, executor=pool, max_async_tasks=concurrency)
            await receiver.listen(asyncio.Event())


if __name__ == "__main__":
    main(Taskiq())
