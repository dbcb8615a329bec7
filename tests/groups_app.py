"""The app of the concurrency-group tests' worker processes.

Run as ``python -m aioqueue worker tests.groups_app:app --url URL``. Each
task counts its own runs in Redis (outside the queue's keys): ``INCR`` when
it starts, ``DECR`` when it ends, and the highest count seen per key in a
sorted set, so a test reads what really ran at once on every process.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio
import redis.asyncio

import aioqueue

QUEUE = "groups"
LIMIT = 2
"""max_concurrency of ``export``, declared in code."""
WIDE_LIMIT = 1000
"""max_concurrency of ``bulk``: never reached, so fairness alone decides."""
KEY_RATE = aioqueue.RateLimit(10, 1.0, burst=2)
"""key_rate_limit of ``metered``: each key its own 10 starts per second (a
burst of 2 absorbs a late wake-up, as GCRA allows, so the rate holds)."""
COUNTERS = "groups-test:"
"""Prefix of the tasks' own counters (not the app's prefix)."""

FAST = aioqueue.WorkerSettings(lease_s=1.0, renew_interval_s=0.25, reaper_interval_s=0.05,
                               reaper_grace_s=0.0, block_s=5.0, shutdown_grace_s=1.0)

_clients: dict[str, Any] = {}


def _client() -> Any:
    url = os.environ["AIOQUEUE_URL"]
    if url not in _clients:
        _clients[url] = redis.asyncio.Redis.from_url(url)
    return _clients[url]


async def _counted(key: str, seconds: float) -> int:
    """Run for ``seconds``, counted under ``key``; the count when it started."""
    r = _client()
    now = int(await r.incr(COUNTERS + "running:" + key))
    await r.zadd(COUNTERS + "max", {key: now}, gt=True)
    await r.zadd(COUNTERS + "max", {key: now}, nx=True)
    await r.rpush(COUNTERS + "starts", f"{key} {time.time():.6f} {os.getpid()}")
    try:
        await anyio.sleep(seconds)
    finally:
        await r.decr(COUNTERS + "running:" + key)
    return now


def build(url: str | None = None) -> aioqueue.App:
    app = aioqueue.App(url or os.environ.get("AIOQUEUE_URL", "redis://127.0.0.1:6379/0"),
                       queue=QUEUE, worker=FAST)

    @app.task(name="export", concurrency_key=lambda customer, **_: customer,
              max_concurrency=LIMIT)
    async def export(customer: str, seconds: float) -> int:
        return await _counted(customer, seconds)

    @app.task(name="bulk", concurrency_key=lambda customer, **_: customer,
              max_concurrency=WIDE_LIMIT)
    async def bulk(customer: str, seconds: float) -> int:
        return await _counted(customer, seconds)

    @app.task(name="metered", concurrency_key=lambda customer, **_: customer,
              key_rate_limit=KEY_RATE)
    async def metered(customer: str) -> str:
        return customer

    @app.task(name="single", concurrency_key=lambda customer, **_: customer, max_concurrency=1)
    async def single(customer: str, seconds: float) -> int:
        """Runs ``seconds`` unless the test set the key ``<COUNTERS>killed``:
        a re-delivery after its worker was killed ends at once."""
        r = _client()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not await r.exists(COUNTERS + "killed"):
            await anyio.sleep(0.05)
        await r.rpush(COUNTERS + "single", f"{customer} {os.getpid()}")
        return os.getpid()

    return app


app = build()
