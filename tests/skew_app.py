"""An app for the clock-skew test: the worker's wall clock is wrong by an hour
(see tests/test_durability_and_clock.py), the server's is right."""

from __future__ import annotations

import time

import anyio

import aioqueue

app = aioqueue.App(queue="skew", worker=aioqueue.WorkerSettings(
    lease_s=1.0, renew_interval_s=0.25, reaper_interval_s=0.05, reaper_grace_s=0.0,
    block_s=0.2, shutdown_grace_s=0.5, reconnect_cap_s=0.2))


@app.task(name="wall_clock")
async def wall_clock() -> float:
    return time.time()


@app.task(name="long")
async def long(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "done"
