"""An app for worker subprocesses in the fault tests.

Run as ``python -m aioqueue worker tests.fault_app:app --url URL``: the CLI
sets ``app.url`` from ``--url``. Environment:

* ``AQ_HISTORY``: file that ``slow`` appends ``start <marker> <pid>`` and
  ``end <marker> <pid>`` lines to (the execution history, kept outside Redis);
* ``AQ_GRACE``: shutdown grace period in seconds (default 0.5);
* ``AQ_PREFIX`` / ``AQ_QUEUE``: key prefix and default queue (optional);
* ``AQ_HISTORY_DIR``: directory where ``rec``, ``poison`` and ``block`` append
  ``start|end <job id> <token> <pid>`` lines to ``<pid>.log`` (one file per
  worker process, O_APPEND, one write per line: read by
  :mod:`tests.harness.checker`);
* ``AQ_LEASE``, ``AQ_RENEW``, ``AQ_MAX_DELIVERIES``, ``AQ_SOCKET_TIMEOUT``,
  ``AQ_REAPER_GRACE``: override the lease (s), the renewal interval (s,
  default a quarter of the lease), the delivery limit, the command socket
  timeout (s) and the reaper's grace after a Redis error (s).

Tests build producer apps with the same task names through :func:`build_app`.
"""

from __future__ import annotations

import os
import tempfile
import time

import anyio

import aioqueue


def settings() -> aioqueue.WorkerSettings:
    lease = float(os.environ.get("AQ_LEASE", "1.0"))
    grace = os.environ.get("AQ_REAPER_GRACE")
    return aioqueue.WorkerSettings(
        lease_s=lease,
        renew_interval_s=float(os.environ.get("AQ_RENEW", lease / 4)),
        reaper_grace_s=float(grace) if grace else None,
        reaper_interval_s=0.05,
        block_s=0.2,
        shutdown_grace_s=float(os.environ.get("AQ_GRACE", "0.5")),
        burst_horizon_s=0.5,
        reconnect_cap_s=0.2,
        max_deliveries=int(os.environ.get("AQ_MAX_DELIVERIES", "5")),
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


def _log(event: str, ctx: aioqueue.JobContext) -> None:
    """Append one line to this process's history file (outside Redis)."""
    directory = os.environ.get("AQ_HISTORY_DIR")
    if not directory:
        return
    path = os.path.join(directory, f"{os.getpid()}.log")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {ctx.job_id} {ctx.token} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _first_delivery(ctx: aioqueue.JobContext) -> bool:
    # the marker never lands in the working directory (the repository, in CI)
    directory = os.environ.get("AQ_HISTORY_DIR") or tempfile.gettempdir()
    try:
        os.close(os.open(os.path.join(directory, f"first-{ctx.job_id}"),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    return True


def build_app(url: str | None = None, *, prefix: str | None = None,
              queue: str | None = None) -> aioqueue.App:
    app = aioqueue.App(
        url,
        socket_timeout_s=float(os.environ.get("AQ_SOCKET_TIMEOUT", "5.0")),
        prefix=prefix or os.environ.get("AQ_PREFIX", "aioqueue"),
        queue=queue or os.environ.get("AQ_QUEUE", "default"),
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

    @app.task(name="rec")
    async def rec(ctx: aioqueue.JobContext, n: int, seconds: float = 0.0) -> int:
        """Record start/end in the per-worker history; returns ``n``."""
        _log("start", ctx)
        if seconds:
            await anyio.sleep(seconds)
        _log("end", ctx)
        return n

    @app.task(name="poison")
    async def poison(ctx: aioqueue.JobContext) -> None:
        """Kills its worker process every time it runs."""
        _log("start", ctx)
        os._exit(3)

    @app.task(name="block")
    async def block(ctx: aioqueue.JobContext, seconds: float) -> str:
        """Blocks the event loop on its first delivery only (the first run
        creates a marker next to the history)."""
        _log("start", ctx)
        if _first_delivery(ctx):
            time.sleep(seconds)
        _log("end", ctx)
        return ctx.token

    return app


app = build_app()
