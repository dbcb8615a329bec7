"""An app for worker subprocesses in the fault tests.

Run as ``python -m aioqueue worker tests.fault_app:app --url URL``: the CLI
sets ``app.url`` from ``--url``. Environment:

* ``AQ_HISTORY``: file that ``slow`` appends ``start <marker> <pid>`` and
  ``end <marker> <pid>`` lines to (the execution history, kept outside Redis);
* ``AQ_GRACE``: shutdown grace period in seconds (default 0.5);
* ``AQ_PREFIX`` / ``AQ_QUEUE``: key prefix and default queue (optional).

Tests build producer apps with the same task names through :func:`build_app`.
"""

from __future__ import annotations

import os

import anyio

import aioqueue


def settings() -> aioqueue.WorkerSettings:
    return aioqueue.WorkerSettings(
        lease_s=1.0,
        renew_interval_s=0.25,
        reaper_interval_s=0.05,
        block_s=0.2,
        shutdown_grace_s=float(os.environ.get("AQ_GRACE", "0.5")),
        burst_horizon_s=0.5,
        reconnect_cap_s=0.2,
        max_deliveries=5,
    )


def _record(event: str, marker: str) -> None:
    path = os.environ.get("AQ_HISTORY")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # one write(2) per line on an O_APPEND descriptor: lines never interleave
        os.write(fd, f"{event} {marker} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def build_app(url: str | None = None) -> aioqueue.App:
    app = aioqueue.App(
        url,
        prefix=os.environ.get("AQ_PREFIX", "aioqueue"),
        queue=os.environ.get("AQ_QUEUE", "default"),
        worker=settings(),
    )

    @app.task(name="slow")
    async def slow(seconds: float, marker: str) -> str:
        """Sleep; the result names the process that ran it: ``<marker>:<pid>``."""
        _record("start", marker)
        await anyio.sleep(seconds)
        _record("end", marker)
        return f"{marker}:{os.getpid()}"

    @app.task(name="quick")
    async def quick(n: int) -> int:
        return n * 2

    return app


app = build_app()
