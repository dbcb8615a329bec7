"""The app of the multi-process worker tests: :mod:`tests.fault_app`'s tasks
plus one that leaks memory on purpose.

Run as ``python -m aioqueue worker tests.processes_app:app --processes N``.
"""

from __future__ import annotations

import os
import time

import aioqueue

from .fault_app import build_app

#: what ``leak`` holds on to: it grows with every call, as a leaking task's would
_LEAKED: list[bytearray] = []


def build(url: str | None = None) -> aioqueue.App:
    app = build_app(url)

    @app.task(name="leak")
    async def leak(mib: int) -> int:
        """Keep ``mib`` MiB allocated (and touched, so it is resident) for
        good; return this process's id."""
        _LEAKED.append(bytearray(os.urandom(1024)) * (mib * 1024))
        return os.getpid()

    @app.task(name="stall")
    async def stall(marker: str, seconds: float) -> str:
        """Block the event loop (``time.sleep`` in async code) on the first
        run only: the first run creates ``marker``, later runs find it."""
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return "again"
        os.close(fd)
        time.sleep(seconds)
        return "blocked"

    return app


app = build()
