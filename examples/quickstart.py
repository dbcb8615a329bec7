"""aioqueue quickstart: enqueue jobs, run them on a worker, await the results.

Run it against the local development server:

    aioqueue dev examples.quickstart:app      # terminal 1: server + worker
    python examples/quickstart.py --no-worker # terminal 2: the producer

or on its own, with a worker inside this process (any Redis at AIOQUEUE_URL,
default redis://localhost:6379/0):

    python examples/quickstart.py
"""

from __future__ import annotations

import sys

import anyio

import aioqueue

app = aioqueue.App(queue="quickstart")  # URL from AIOQUEUE_URL


@app.task(max_tries=3, timeout=30.0)
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def shout(text: str) -> str:
    return text.upper() + "!"


async def produce() -> None:
    job = await add.enqueue(1, 2)
    print(f"enqueued {job.id}; 1 + 2 = {await job.result(timeout=10)}")
    later = await add.options(delay=0.5, priority=9).enqueue(2, 3)
    print(f"delayed job: 2 + 3 = {await later.result(timeout=10)}")
    byname = await app.enqueue(shout.name, "hello")
    print(f"by name: {await byname.result(timeout=10)}")
    jobs = await add.enqueue_many([add.bind(i, i) for i in range(5)])
    print(f"batch: {[await j.result(timeout=10) for j in jobs]}")


async def main(with_worker: bool) -> None:
    async with app:
        if not with_worker:
            await produce()
            return
        worker = aioqueue.Supervisor(app, concurrency=10)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await produce()
            worker.request_shutdown()


if __name__ == "__main__":
    anyio.run(main, "--no-worker" not in sys.argv[1:])
