"""What a running task can know about its job, and the hooks around jobs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App
    from .broker import ClaimedJob


@dataclass(slots=True)
class JobContext:
    """Handed to a task that declares a parameter annotated ``JobContext``
    (first parameter), and to middleware.

    ``token`` is the job's fencing token: it grows with every delivery, so an
    external system can refuse writes from an older delivery of the same job.
    """

    app: App
    job_id: str
    task_name: str
    queue: str
    attempt: int
    token: str
    enqueued_at: datetime
    worker_id: str
    max_tries: int
    _job: ClaimedJob | None = field(repr=False)

    @property
    def state(self) -> dict[str, Any]:
        """The app's shared state (filled by ``on_startup`` hooks)."""
        return self.app.state

    async def progress(self, fraction: float, message: str = "") -> bool:
        """Record progress (0.0-1.0) for the producer to see in ``job.info()``
        and ``job.events()``. Returns False if this worker lost the job's lease."""
        fraction = min(1.0, max(0.0, float(fraction)))
        if self._job is None:
            return True
        payload = json.dumps({"fraction": fraction, "message": message})
        return await self.app.broker.progress(self.queue, self.job_id, self.token, payload)


def make_context(app: App, job: ClaimedJob | None, worker_id: str,
                 max_tries: int) -> JobContext:
    if job is None:  # a direct call, outside any queue
        return JobContext(
            app=app, job_id="local", task_name="", queue="", attempt=1, token="0",
            enqueued_at=datetime.now(UTC), worker_id=worker_id, max_tries=max_tries, _job=None)
    return JobContext(
        app=app, job_id=job.id, task_name=job.task, queue=job.queue, attempt=job.attempt,
        token=job.token, enqueued_at=datetime.fromtimestamp(job.enqueued_ms / 1000, UTC),
        worker_id=worker_id, max_tries=max_tries, _job=job,
    )


CallNext = Callable[[], Awaitable[Any]]
"""Runs the rest of the chain (the next middleware, finally the task)."""

Middleware = Callable[[JobContext, CallNext], Awaitable[Any]]
"""``async def mw(ctx, call_next): ...; return await call_next()``: runs around
every job in a worker; it may log, time, trace, or change the outcome by
raising. Registered with ``@app.middleware``; the first registered is the
outermost."""

LifecycleHook = Callable[["App"], Awaitable[None]]
"""``async def hook(app) -> None``, registered with ``@app.on_startup`` or
``@app.on_shutdown``; runs once per worker process."""
