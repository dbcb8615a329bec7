"""The app of the flow-control tests' worker processes.

Run as ``python -m aioqueue worker tests.flow_app:app --queues flow``.
"""

from __future__ import annotations

import os

import aioqueue

QUEUE = "flow"
TICK_LIMIT = aioqueue.RateLimit(50, 1.0, burst=5)
"""Declared in code: every process that opens the app stores it."""


def build(url: str | None = None) -> aioqueue.App:
    app = aioqueue.App(url or os.environ.get("AIOQUEUE_URL", "redis://127.0.0.1:6379/0"),
                       queue=QUEUE)

    @app.task(name="tick", rate_limit=TICK_LIMIT)
    async def tick(n: int) -> int:
        return n

    return app


app = build()
