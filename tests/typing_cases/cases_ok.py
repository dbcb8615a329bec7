"""Correct uses of the typed API: mypy --strict must accept every line."""

from __future__ import annotations

import aioqueue

app = aioqueue.App("redis://localhost:6379/0")


@app.task(max_tries=3, timeout=30.0)
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


async def produce() -> int:
    job: aioqueue.Job[int] = await add.enqueue(1, 2)
    later: aioqueue.Job[int] = await add.options(delay=5.0, priority=9).enqueue(2, 3)
    named = await greet.enqueue("ada", punctuation="?")
    text: str = await named.result(timeout=10)
    status: aioqueue.JobStatus = await job.status()
    many = await add.enqueue_many([add.bind(i, i) for i in range(3)])
    direct: int = await add(1, 2)
    byname: aioqueue.Job[object] = await app.enqueue("add", 4, 5)
    untimed: aioqueue.Job[int] = await add.options(timeout=None, job_id="a-1").enqueue(1, 1)
    whole = add.options(aioqueue.EnqueueOptions(priority=-5, queue="slow"))
    shaped = await app.enqueue_with("add", (1, 2), options=aioqueue.EnqueueOptions(delay=1.0),
                                    priority=aioqueue.UNSET, timeout=None)
    del later, text, status, many, byname, untimed, whole, shaped
    return await job.result(timeout=10) + direct
