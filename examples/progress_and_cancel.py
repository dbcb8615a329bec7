"""Progress and cancellation: report progress, follow a job's events, cancel a running job.

Runs as written (a worker in this process; the server at AIOQUEUE_URL or an
embedded one): ``python examples/progress_and_cancel.py``
"""

from __future__ import annotations

import anyio

import aioqueue
from aioqueue.testing import local_server

app = aioqueue.App(queue="progress-example")


@app.task
async def resize(ctx: aioqueue.JobContext, images: list[str]) -> int:
    for done, _image in enumerate(images, 1):
        await anyio.sleep(0.05)  # the real work
        await ctx.progress(done / len(images), f"{done}/{len(images)} resized")
    return len(images)


@app.task
async def transcode(ctx: aioqueue.JobContext, video: str) -> None:
    try:
        await ctx.progress(0.0, f"transcoding {video}")
        await anyio.sleep(3600)
    finally:
        print(f"transcode of {video} stopped: its finally block ran")


async def main() -> None:
    async with app:
        worker = aioqueue.Supervisor(app, concurrency=10)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            job = await resize.enqueue([f"img{i}.png" for i in range(4)])
            async for event in job.events():
                progress = f" {event.progress.message}" if event.progress else ""
                print(f"resize: {event.status}{progress}")
            long = await transcode.enqueue("talk.mp4")
            async for event in long.events():
                if event.progress is not None:  # it is running: cancel it
                    print(f"cancel: {await long.cancel('the user closed the tab')}")
                    break
            try:
                await long.result(timeout=10)
            except aioqueue.JobCancelled:
                print(f"transcode: {await long.status()}")
            worker.request_shutdown()


if __name__ == "__main__":
    with local_server() as url:
        app.url = url
        anyio.run(main)
