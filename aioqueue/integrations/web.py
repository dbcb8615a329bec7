"""Framework-neutral helpers for web handlers: a job's state as JSON, waiting
with a deadline, and server-sent events of a job's progress."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from ..app import App
from ..errors import ConfigurationError, JobError, JobNotFound
from ..job import Job, JobEvent, JobStatus
from ..keys import check_name

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Headers for an event stream: no caching, no proxy buffering."""


def find_job(app: App, job_id: str, queue: str | None = None) -> Job[Any] | None:
    """A handle on the job ``job_id`` names, or None when it cannot be a job
    id (give the caller a 404). The job may still not exist: ask its state."""
    try:
        check_name("job id", job_id)
    except ConfigurationError:
        return None
    return app.job(job_id, queue)


async def job_state(job: Job[Any]) -> dict[str, Any]:
    """What a status endpoint returns: ``id``, ``status``, ``attempt``,
    ``progress``, and ``result`` (as stored, JSON) once it succeeded or
    ``error`` (type and message; the traceback stays on the server) once it
    failed. An unknown job has ``status: "unknown"``."""
    try:
        info = await job.info()
    except JobNotFound:
        return {"id": job.id, "status": JobStatus.UNKNOWN.value}
    state: dict[str, Any] = {
        "id": job.id,
        "status": info.status.value,
        "attempt": info.attempt,
        "progress": None if info.progress is None else {
            "fraction": info.progress.fraction, "message": info.progress.message},
    }
    if info.status is JobStatus.SUCCEEDED:
        # a handle without the task's return type gives the stored JSON back
        with contextlib.suppress(JobError):
            state["result"] = await Job(job.backend, job.id, job.queue).result()
    elif info.status is JobStatus.FAILED and info.error is not None:
        state["error"] = {"type": info.error.get("type"), "message": info.error.get("message")}
    return state


async def wait_state(job: Job[Any], timeout: float) -> dict[str, Any]:
    """Wait up to ``timeout`` seconds for the job to end, then return its
    `job_state` (``status`` tells whether it ended in time)."""
    with contextlib.suppress(JobError):
        await job.result(timeout=timeout)
    return await job_state(job)


def sse_message(event: JobEvent) -> str:
    """One server-sent event: ``event:`` is the job's status, ``data:`` JSON
    with the status and the progress (fraction, message)."""
    progress = None if event.progress is None else {
        "fraction": event.progress.fraction, "message": event.progress.message}
    data = json.dumps({"status": event.status.value, "progress": progress})
    return f"event: {event.status.value}\ndata: {data}\n\n"


async def sse_events(job: Job[Any]) -> AsyncIterator[str]:
    """The job's status changes and progress reports as server-sent events,
    from its current state until it ends (then the stream ends)."""
    try:
        async for event in job.events():
            yield sse_message(event)
    except JobNotFound:
        yield sse_message(JobEvent(JobStatus.UNKNOWN))
