"""Workflows: chain (each step gets the previous result), group (parallel), chord (then a callback).

Runs as written (a worker in this process; the server at AIOQUEUE_URL or an
embedded one): ``python examples/workflows.py``
"""

from __future__ import annotations

import anyio

import aioqueue
from aioqueue.testing import local_server

app = aioqueue.App(queue="workflows-example")


@app.task
async def download(url: str) -> str:
    return f"<html>{url}</html>"


@app.task
async def word_count(page: str) -> int:
    return len(page)


@app.task
async def total(counts: list[int]) -> int:
    return sum(counts)


@app.task
async def label(count: int, prefix: str) -> str:
    return f"{prefix}{count}"


async def main() -> None:
    async with app:
        worker = aioqueue.Supervisor(app, concurrency=10)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            steps = aioqueue.chain(download.s("a.example"), word_count.s(),
                                   label.s(prefix="chars: "))
            print(f"chain: {await (await steps.enqueue()).result(timeout=10)}")
            pages = aioqueue.group(word_count.s(f"page {i}") for i in range(4))
            print(f"group: {await (await pages.enqueue()).result(timeout=10)}")
            summed = aioqueue.chord((word_count.s("x" * n) for n in (1, 2, 3)), total.s())
            print(f"chord: {await (await summed.enqueue()).result(timeout=10)}")
            worker.request_shutdown()


if __name__ == "__main__":
    with local_server() as url:
        app.url = url
        anyio.run(main)
