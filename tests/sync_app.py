"""An app with a plain ``def`` task that outlives its timeout (its thread
cannot be interrupted): ``python -m aioqueue worker tests.sync_app:app``."""

from __future__ import annotations

import time

import aioqueue

app = aioqueue.App(worker=aioqueue.WorkerSettings(block_s=0.2, shutdown_grace_s=0.5))


@app.task(name="stuck", timeout=0.3, max_tries=1)
def stuck() -> None:
    time.sleep(3600)
