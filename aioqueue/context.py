"""What a running task can know about its job, and the hooks around jobs."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import BrokerError
from .keys import logical_queue

if TYPE_CHECKING:
    from .backend import Backend
    from .broker import Broker, ClaimedJob


log = logging.getLogger("aioqueue.worker")


@dataclass(slots=True)
class JobContext:
    """Handed to a task that declares a parameter annotated ``JobContext``
    (first parameter), and to middleware.

    ``token`` is the job's fencing token: it grows with every delivery, so an
    external system can refuse writes from an older delivery of the same job.
    """

    job_id: str
    task_name: str
    queue: str
    attempt: int
    token: str
    enqueued_at: datetime
    worker_id: str
    max_tries: int
    state: dict[str, Any] = field(repr=False)
    """The app's shared state (``app.state``, filled by ``on_startup`` hooks)."""
    _job: ClaimedJob | None = field(repr=False)
    _broker: Broker | None = field(repr=False)

    async def progress(self, fraction: float, message: str = "") -> bool:
        """Record progress (0.0-1.0) for the producer to see in ``job.info()``
        and ``job.events()``. Returns False if this worker lost the job's lease.

        Progress is best effort: when Redis cannot take it (unreachable, busy,
        read-only...), the report is dropped with a warning and the job goes
        on; a report never costs the job a try."""
        fraction = min(1.0, max(0.0, float(fraction)))
        if self._job is None or self._broker is None:
            return True
        payload = json.dumps({"fraction": fraction, "message": message})
        try:
            return await self._broker.progress(self._job.queue, self.job_id, self.token,
                                               payload)
        except BrokerError as exc:
            log.warning("job %s: progress report dropped (%s: %s)", self.job_id,
                        type(exc).__name__, exc)
            return True


def make_context(backend: Backend, job: ClaimedJob | None, worker_id: str,
                 max_tries: int) -> JobContext:
    if job is None:  # a direct call, outside any queue
        return JobContext(
            job_id="local", task_name="", queue="", attempt=1, token="0",
            enqueued_at=datetime.now(UTC), worker_id=worker_id, max_tries=max_tries,
            state=backend.state, _job=None, _broker=None)
    return JobContext(
        job_id=job.id, task_name=job.task, queue=logical_queue(job.queue),
        attempt=job.attempt,
        token=job.token, enqueued_at=datetime.fromtimestamp(job.enqueued_ms / 1000, UTC),
        worker_id=worker_id, max_tries=max_tries, state=backend.state, _job=job,
        _broker=backend.broker,
    )


CallNext = Callable[[], Awaitable[Any]]
"""Runs the rest of the chain (the next middleware, finally the task)."""

Middleware = Callable[[JobContext, CallNext], Awaitable[Any]]
"""``async def mw(ctx, call_next): ...; return await call_next()``: runs around
every job in a worker; it may log, time, trace, or change the outcome by
raising. Registered with ``@app.middleware``; the first registered is the
outermost."""

