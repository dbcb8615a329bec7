"""An app for the operator CLI and dashboard tests."""

from __future__ import annotations

import aioqueue

app = aioqueue.App(queue="ops", retry=aioqueue.RetryPolicy(backoff_s=0.01, backoff_max_s=0.05))


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task(max_tries=2)
async def explode(message: str) -> None:
    raise RuntimeError(message)


@app.task(concurrency_key=lambda customer, **_: customer, max_concurrency=2)
async def export(customer: str) -> str:
    return customer


@app.task(queue="other")
async def elsewhere(text: str) -> str:
    return text
