"""Running the app's jobs inside a test: ``run_worker`` and ``drain``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from .. import broker_testing
from ..app import App
from ..errors import AioqueueError, JobError
from ..job import Job, JobInfo, JobStatus
from ..settings import WorkerSettings
from ..supervisor import Supervisor
from ..task import Task


class DrainTimeout(AioqueueError, TimeoutError):
    """``drain()`` ran out of time with jobs still waiting, running or due."""


def queues_of(app: App) -> list[str]:
    """Every queue the app's tasks and schedules use, its default queue first."""
    queues = [app.default_queue]
    for task in app.tasks.values():
        if task.queue not in queues:
            queues.append(task.queue)
    return queues


def fast_settings(settings: WorkerSettings) -> WorkerSettings:
    """The app's worker settings with short idle waits and a short shutdown
    grace, so a worker inside a test starts and stops within a fraction of a
    second. Leases, retries and limits are left as the app has them."""
    return dataclasses.replace(
        settings,
        block_s=min(settings.block_s, 0.05),
        shutdown_grace_s=min(settings.shutdown_grace_s, 2.0),
        burst_horizon_s=0.0,
    )


@contextlib.asynccontextmanager
async def run_worker(
    app: App,
    *,
    concurrency: int = 10,
    queues: Sequence[str] | None = None,
    settings: WorkerSettings | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a worker (a `Supervisor`) in this event loop for
    the body of the block; it stops gracefully when the block ends.

    ```python
    async with run_worker(app, concurrency=5):
        job = await add.enqueue(1, 2)
        assert await job.result(timeout=5) == 3
    ```

    :param queues: default: every queue the app's tasks use.
    :param settings: default: the app's, with the short waits of
        `fast_settings`.
    """
    supervisor = Supervisor(
        app, queues=queues or queues_of(app), concurrency=concurrency,
        settings=settings or fast_settings(app.worker_settings))
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        try:
            yield supervisor
        finally:
            supervisor.request_shutdown()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one job ended, as ``drain()`` found it."""

    job: Job[Any]
    info: JobInfo
    result: Any = None
    """The return value (parsed back into the task's return type when this
    process knows the task); ``None`` unless the job succeeded."""

    @property
    def task(self) -> str:
        return self.info.task

    @property
    def status(self) -> JobStatus:
        return self.info.status

    @property
    def ok(self) -> bool:
        return self.info.status is JobStatus.SUCCEEDED

    @property
    def error(self) -> dict[str, Any] | None:
        """The last error (``type``, ``message``, ``traceback``, ``attempt``)."""
        return self.info.error


class Outcomes(list[Outcome]):
    """The jobs that ended during a ``drain()``, in the order they ended."""

    def of(self, task: Task[Any, Any] | str) -> Outcomes:
        """Only the outcomes of one task (a Task or its name)."""
        name = task if isinstance(task, str) else task.name
        return Outcomes(o for o in self if o.task == name)

    @property
    def succeeded(self) -> Outcomes:
        return Outcomes(o for o in self if o.ok)

    @property
    def failed(self) -> Outcomes:
        return Outcomes(o for o in self if o.status is JobStatus.FAILED)

    def results(self) -> list[Any]:
        """The results of the jobs that succeeded, in the order they ended."""
        return [o.result for o in self if o.ok]


async def drain(
    app: App,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 10,
    timeout: float = 30.0,
    skip_retry_delays: bool = True,
) -> Outcomes:
    """Run the app's jobs until nothing is waiting, running or due, then
    return the outcomes of every job that ended meanwhile.

    Jobs enqueued by jobs (and workflow steps) run too. Jobs scheduled for
    later stay scheduled (move them with `advance`). A job waiting for
    a retry is made due at once when ``skip_retry_delays`` (the default), so
    a task with ``max_tries=3`` is tried three times within one drain.

    :raises DrainTimeout: jobs were still waiting, running or due after
        ``timeout`` seconds.
    """
    app_queues = list(queues or queues_of(app))
    since_ms = await app.broker.server_time_ms()
    settings = fast_settings(app.worker_settings)
    try:
        with anyio.fail_after(timeout):
            while True:
                await Supervisor(app, queues=app_queues, concurrency=concurrency,
                                 burst=True, settings=settings).run()
                if not skip_retry_delays or not await _retries_made_due(app, app_queues):
                    break
    except TimeoutError:
        left = {q: await app.queue_info(q) for q in app_queues}
        raise DrainTimeout(f"drain: jobs left after {timeout} s: {_describe(left)}") from None
    return await finished_since(app, app_queues, since_ms)


def _describe(left: dict[str, dict[str, int]]) -> str:
    return "; ".join(
        f"{q}: " + ", ".join(f"{k}={c[k]}" for k in ("waiting", "running", "scheduled"))
        for q, c in left.items())


async def _retries_made_due(app: App, queues: Iterable[str]) -> int:
    moved = 0
    for queue in queues:
        retries: dict[str, int] = {}
        now_ms = await app.broker.server_time_ms()
        for job_id, due_ms in await broker_testing.scheduled_jobs(app.broker, queue):
            info = await app.job(job_id, queue).info()
            if info.errors and due_ms > now_ms:  # it failed before: a retry
                retries[job_id] = now_ms
        moved += await broker_testing.set_due_times(app.broker, queue, retries)
    return moved


async def finished_since(app: App, queues: Iterable[str], since_ms: int) -> Outcomes:
    """Outcomes of the jobs of ``queues`` that ended at or after ``since_ms``
    (server time, epoch ms), in the order they ended."""
    found: list[Outcome] = []
    for queue in queues:
        for job_id in await broker_testing.job_ids(app.broker, queue):
            job = _typed_job(app, job_id, queue, None)
            try:
                info = await job.info()
            except JobError:
                continue  # expired between the scan and the read
            if info.status.is_final and (info.finished_ms or 0) >= since_ms:
                job = _typed_job(app, job_id, queue, info.task)
                found.append(Outcome(job, info, await _result(job, info)))
    found.sort(key=lambda o: o.info.finished_ms or 0)
    return Outcomes(found)


def _typed_job(app: App, job_id: str, queue: str, task: str | None) -> Job[Any]:
    known = app.tasks.get(task) if task is not None else None
    if known is None:
        return app.job(job_id, queue)
    return Job(app.backend, job_id, queue, known.codec.returns)


async def _result(job: Job[Any], info: JobInfo) -> Any:
    if info.status is not JobStatus.SUCCEEDED:
        return None
    return await job.result()
