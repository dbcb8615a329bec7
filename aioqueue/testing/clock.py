"""Time travel for tests: move server-side due times instead of sleeping.

Delays, ``at=`` times and retry backoffs are due times kept by the server
(its ``TIME``, never the test's clock). These helpers change those due times,
so a test of "runs in an hour" takes no hour, and no ``sleep``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from .. import broker_testing
from ..app import App
from ..errors import ConfigurationError
from ..job import Job
from .worker import queues_of


async def advance(
    app: App, by: float | timedelta, *, queues: Sequence[str] | None = None
) -> int:
    """Act as if ``by`` (seconds or a timedelta) had passed for every
    scheduled job of the app's queues: each becomes due that much earlier.
    Jobs whose due time is now past run as soon as a worker claims (a running
    `run_worker` is woken at once; `drain` runs them).

    Returns how many scheduled jobs were moved.
    """
    seconds = by.total_seconds() if isinstance(by, timedelta) else float(by)
    if seconds < 0:
        raise ConfigurationError("advance() moves time forwards only")
    shift_ms = round(seconds * 1000)
    moved = 0
    for queue in queues or queues_of(app):
        due = await broker_testing.scheduled_jobs(app.broker, queue)
        moved += await broker_testing.set_due_times(
            app.broker, queue, {job_id: due_ms - shift_ms for job_id, due_ms in due})
    return moved


async def make_due(*jobs: Job[Any]) -> int:
    """Make these scheduled jobs due now. Returns how many were still
    scheduled (a job already running or finished is left alone)."""
    moved = 0
    by_app_queue: dict[tuple[int, str], list[Job[Any]]] = {}
    for job in jobs:
        by_app_queue.setdefault((id(job.backend), job.queue), []).append(job)
    for group in by_app_queue.values():
        broker, queue = group[0].backend.broker, group[0].queue
        now_ms = await broker.server_time_ms()
        moved += await broker_testing.set_due_times(
            broker, queue, {job.id: now_ms for job in group})
    return moved


async def trigger_schedule(app: App, name: str) -> Job[Any]:
    """Enqueue the next tick of a periodic schedule now, as the scheduler
    would at that tick: same task, arguments and job id
    (``cron.<name>.<tick ms>``), so a worker's own scheduler firing the same
    tick later finds the job already there and adds nothing.
    """
    schedule = app.schedules.get(name)
    if schedule is None:
        known = ", ".join(sorted(app.schedules)) or "none"
        raise ConfigurationError(f"no schedule named {name!r} (schedules: {known})")
    tick_ms = schedule.next_after(await app.broker.server_time_ms())
    task = schedule.task
    args, kwargs = task.codec.decode(schedule.args_json)
    return await task.options(job_id=schedule.job_id(tick_ms)).enqueue(*args, **kwargs)
