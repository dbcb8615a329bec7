"""An app for workflow tests with worker subprocesses."""

from __future__ import annotations

import os
import time

import anyio

import aioqueue
from aioqueue import JobContext

SETTINGS = aioqueue.WorkerSettings(
    lease_s=1.0, renew_interval_s=0.25, reaper_interval_s=0.05, reaper_grace_s=0.0,
    block_s=0.2, shutdown_grace_s=0.5, reconnect_cap_s=0.2,
)


def _record(line: str) -> None:
    path = os.environ.get("AQ_HISTORY")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def build_app(url: str | None = None) -> aioqueue.App:
    app = aioqueue.App(url, queue="wf", worker=SETTINGS)

    @app.task(name="member")
    async def member(ctx: JobContext, i: int, seconds: float) -> int:
        _record(f"start {ctx.job_id} {os.getpid()} {time.time()}")
        await anyio.sleep(seconds)
        _record(f"end {ctx.job_id} {os.getpid()}")
        return i * 10

    @app.task(name="total")
    async def total(ctx: JobContext, values: list[int]) -> int:
        _record(f"callback {ctx.job_id} {os.getpid()}")
        return sum(values)

    return app


app = build_app()
