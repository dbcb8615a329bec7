"""An app for the CLI tests: ``python -m aioqueue ... tests.cli_app:app``.

``boom`` always fails (one try), so its jobs are dead-lettered at once and
come back dead after a replay; ``elsewhere`` lives on its own queue.
"""

from __future__ import annotations

import aioqueue

app = aioqueue.App(worker=aioqueue.WorkerSettings(block_s=0.2, shutdown_grace_s=0.5))


@app.task(name="boom", max_tries=1)
async def boom(n: int) -> None:
    raise RuntimeError(f"boom {n}")


@app.task(name="elsewhere", queue="other")
async def elsewhere(n: int) -> int:
    return n * 2
