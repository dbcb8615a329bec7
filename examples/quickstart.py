"""Quickstart: define tasks, enqueue them, run them on a worker, await the results.

Runs as written, with a worker inside this process, against the server at
AIOQUEUE_URL or, when that is not set, an embedded one started for the run:

    python examples/quickstart.py

Or with the development server and its worker in another terminal:

    aioqueue dev examples.quickstart:app                                     # terminal 1
    AIOQUEUE_URL=redis://127.0.0.1:6390/0 python examples/quickstart.py --no-worker
"""

from __future__ import annotations

import os
import sys

import anyio

import aioqueue
from aioqueue.testing import local_server

app = aioqueue.App(queue="quickstart")  # URL from AIOQUEUE_URL


@app.task(max_tries=3, timeout=30.0)
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def shout(text: str) -> str:
    return text.upper() + "!"


async def produce() -> None:
    job = await add.enqueue(1, 2)  # aioqueue.Job[int]; mypy rejects add.enqueue("a", 2)
    print(f"enqueued {job.id}; 1 + 2 = {await job.result(timeout=10)}")
    later = await add.options(delay=0.5, priority=9).enqueue(2, 3)
    print(f"delayed job: 2 + 3 = {await later.result(timeout=10)}")
    byname = await app.enqueue(shout.name, "hello")  # for producers without the task code
    print(f"by name: {await byname.result(timeout=10)}")
    jobs = await add.enqueue_many([add.bind(i, i) for i in range(5)])
    print(f"batch: {await aioqueue.gather(*jobs, timeout=10)}")


async def main(with_worker: bool) -> None:
    async with app:
        if not with_worker:
            await produce()  # a worker elsewhere (aioqueue dev / aioqueue worker) runs the jobs
            return
        worker = aioqueue.Supervisor(app, concurrency=10)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await produce()
            worker.request_shutdown()


if __name__ == "__main__":
    with_worker = "--no-worker" not in sys.argv[1:]
    if not with_worker and not os.environ.get("AIOQUEUE_URL"):
        sys.exit("--no-worker needs a worker elsewhere: start `aioqueue dev "
                 "examples.quickstart:app` and set the AIOQUEUE_URL it prints")
    with local_server() as url:
        app.url = url
        anyio.run(main, with_worker)
