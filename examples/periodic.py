"""Periodic tasks: a cron schedule and an interval; each tick is enqueued once across workers.

Runs as written (two workers in this process for a few seconds; the
server at AIOQUEUE_URL or an embedded one): ``python examples/periodic.py``
"""

from __future__ import annotations

from datetime import timedelta

import anyio

import aioqueue
from aioqueue.testing import local_server

app = aioqueue.App(queue="periodic-example")
ticks: list[str] = []


@app.cron("0 3 * * *", tz="Europe/Berlin")  # 03:00 Berlin time, summer and winter
@app.task
async def nightly_cleanup() -> None:
    ticks.append("cleanup")


@app.task
async def heartbeat(ctx: aioqueue.JobContext, service: str) -> None:
    ticks.append(ctx.job_id)  # cron.heartbeat.<tick ms>: one job id per tick


app.schedule(heartbeat, every=timedelta(seconds=1), args=("billing",), missed="skip")


async def main() -> None:
    async with app:
        workers = [aioqueue.Supervisor(app, concurrency=5) for _ in range(2)]
        async with anyio.create_task_group() as tg:
            for worker in workers:
                await tg.start(worker.run)
            await anyio.sleep(3.2)  # let the 1-second schedule tick a few times
            for worker in workers:
                worker.request_shutdown()
    # two workers, yet each tick ran once
    print(f"2 workers ran {len(ticks)} heartbeat(s) for {len(set(ticks))} tick(s)")
    for name, schedule in app.schedules.items():
        print(f"schedule {name}: {schedule.describe()}")


if __name__ == "__main__":
    with local_server() as url:
        app.url = url
        anyio.run(main)
