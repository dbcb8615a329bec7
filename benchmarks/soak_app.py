"""The app that ``benchmarks/soak.py`` runs in its worker processes.

``work`` records ``start|end <job id> <token> <pid>`` in a per-process history
file under ``AQ_HISTORY_DIR`` (O_APPEND, one write per line, outside Redis),
so :mod:`tests.harness.checker` can check the run. 5% of jobs fail for good
(``fail=True``), 1% are slow (several leases long, kept alive by renewals).
The nemesis's misbehaving tasks pick a ``mode``: ``"exit"`` raises
``SystemExit`` (which must fail only that job, never stop its worker) and
``"surrogate"`` fails with an error text holding a lone surrogate (a
non-UTF-8 file name, which the scripts must store without failing).
"""

from __future__ import annotations

import os

import anyio

import aioqueue


def settings() -> aioqueue.WorkerSettings:
    return aioqueue.WorkerSettings(
        lease_s=1.0, renew_interval_s=0.25, reaper_interval_s=0.1, block_s=0.5,
        shutdown_grace_s=0.5, reconnect_cap_s=0.5, max_deliveries=20,
    )


def _log(event: str, ctx: aioqueue.JobContext) -> None:
    directory = os.environ.get("AQ_HISTORY_DIR")
    if not directory:
        return
    fd = os.open(os.path.join(directory, f"{os.getpid()}.log"),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {ctx.job_id} {ctx.token} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


class Planned(Exception):
    """The failure 5% of soak jobs are asked to raise."""


def build_app(url: str | None = None) -> aioqueue.App:
    app = aioqueue.App(url, prefix="soak", queue="soak", worker=settings(),
                       socket_timeout_s=1.0)

    @app.task(name="work")
    async def work(ctx: aioqueue.JobContext, n: int, fail: bool = False,
                   seconds: float = 0.0, mode: str = "") -> int:
        _log("start", ctx)
        if seconds:
            await anyio.sleep(seconds)
        _log("end", ctx)
        if mode == "exit":
            raise SystemExit(f"job {n} exits the process (it must not)")
        if mode == "surrogate":
            raise Planned(os.fsdecode(b"cannot read caf\xe9-" + str(n).encode() + b".csv"))
        if fail:
            raise Planned(f"job {n} fails on purpose")
        return n

    return app


app = build_app()
