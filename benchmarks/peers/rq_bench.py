"""RQ driver (runs in benchmarks/.venvs/rq).

RQ is synchronous: its enqueue API is a blocking call (no 100-in-flight column) and its default
Worker runs one job at a time in a forked "work horse" process, so the worker's concurrency is
1 whatever --concurrency says; scale-out is by more worker processes (the 2 and 4 columns).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
from _common import QUEUE, Adapter, main, sync_body
from rq import Queue, Worker, get_current_job


def incr(job_no: int, ref: float) -> int:
    job = get_current_job()
    return sync_body(job_no, ref, job.connection if job else None)


FUNC = "rq_bench.incr"


class Rq(Adapter):
    name = "rq"
    dists = ("rq",)
    concurrent_enqueue = False
    has_batch = True
    sync_worker = True
    notes = {
        "conc": "RQ's enqueue is synchronous (blocking redis-py); no concurrent awaits",
        "drain1": "default Worker: forks a work horse per job, concurrency 1 per process",
        "general": "default Worker (fork per job) with with_scheduler=True (needed for "
        "enqueue_in) and logging_level=WARNING (the default INFO logs two lines per job); "
        "batch = Queue.enqueue_many(prepare_data(...)); result wait = "
        "Job.latest_result(timeout=) (blocking XREAD on the results stream); delay via "
        "enqueue_in(), promoted by the worker's scheduler (polls every 1 s by default).",
    }

    async def open(self, url: str) -> None:
        self.conn = redis.Redis.from_url(url)
        self.q = Queue(QUEUE, connection=self.conn)

    async def close(self) -> None:
        self.conn.close()

    async def enqueue(self, job_no: int, ref: float, delay: float | None = None) -> Any:
        if delay:
            return self.q.enqueue_in(timedelta(seconds=delay), FUNC, job_no, ref)
        return self.q.enqueue(FUNC, job_no, ref)

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        self.q.enqueue_many([Queue.prepare_data(FUNC, (n, ref)) for n, ref in items])

    async def wait_result(self, handle: Any, timeout: float) -> Any:
        res = handle.latest_result(timeout=int(timeout))
        return res.return_value if res else None

    def prepare_worker(self, url: str, concurrency: int) -> None:
        conn = redis.Redis.from_url(url)
        self.worker = Worker([Queue(QUEUE, connection=conn)], connection=conn)

    def run_worker_sync(self, url: str, concurrency: int) -> None:
        self.worker.work(with_scheduler=True, logging_level="WARNING")


if __name__ == "__main__":
    main(Rq())
