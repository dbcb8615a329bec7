"""The app of the multi-process worker tests: :mod:`tests.fault_app`'s tasks
plus one that leaks memory on purpose.

Run as ``python -m aioqueue worker tests.processes_app:app --processes N``.
"""

from __future__ import annotations

import os

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

    return app


app = build()
