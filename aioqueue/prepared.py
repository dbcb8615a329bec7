"""A job as the producer prepares it: its id, validated arguments and the
options that become its record (:class:`PreparedJob`). Nothing here writes;
:meth:`PreparedJob.submit` (or :func:`submit_job`, with tracing) hands the
job to the broker."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, NamedTuple, ParamSpec, TypeVar

from .broker_flow import enqueue_flow
from .errors import JobIdConflict, PayloadTooLarge
from .flow import UniqueKey
from .options import EnqueueOptions
from .record import Field
from .script_codes import EnqueueCode

if TYPE_CHECKING:
    from .backend import Backend
    from .broker import Broker

__all__ = ["PreparedJob", "check_payload", "new_job_id", "payload_bytes", "prepare_job",
           "submit_job"]

P = ParamSpec("P")
R = TypeVar("R")


def new_job_id() -> str:
    return secrets.token_urlsafe(12)


class PreparedJob(NamedTuple):
    """One validated job, ready for the broker: nothing is written yet.
    (A named tuple: built on every enqueue, so it must be cheap.)"""

    job_id: str
    task: str
    payload: str
    priority: int
    delay_ms: int
    at_ms: int | None
    fields: dict[str, str | int]
    """Per-job record fields (see ``EnqueueOptions.record_fields``)."""
    fixed_id: bool = False
    """The id was given by the caller (not generated)."""
    unique: UniqueKey | None = None
    """The job's unique key (``unique_key=``), decided in the enqueue script."""
    group: str | None = None
    """The job's concurrency group (``flow.group_id``), or None."""

    async def submit(self, broker: Broker, queue: str) -> str:
        """Enqueue this job (a no-op if its id exists for the same task).
        Returns the id of the job that stands for it: its own, or with a
        unique key, the job that already holds the key.

        :raises JobIdConflict: the given id names a job of another task.
        """
        holder = self.job_id
        if self.unique is not None or self.group is not None:
            code, holder = await enqueue_flow(
                broker, queue, self.job_id, self.task, self.payload, unique=self.unique,
                group=self.group, priority=self.priority, delay_ms=self.delay_ms,
                at_ms=self.at_ms, extra=self.fields)
        else:
            code = await broker.enqueue(
                queue, self.job_id, self.task, self.payload, priority=self.priority,
                delay_ms=self.delay_ms, at_ms=self.at_ms, extra=self.fields)
        if code is EnqueueCode.ID_TAKEN:
            # the enqueue is idempotent only for the same task
            (owner,) = await broker.job_fields(queue, self.job_id, Field.TASK)
            raise JobIdConflict(
                f"job id {self.job_id!r} in queue {queue!r} already names a job of task "
                f"{owner!r}; nothing was enqueued for task {self.task!r}", job_id=self.job_id)
        return holder

    def as_tuple(self) -> tuple[str, str, str, int, int, int | None, dict[str, str | int]]:
        return (self.job_id, self.task, self.payload, self.priority, self.delay_ms,
                self.at_ms, self.fields)

    def traced(self, context: str) -> PreparedJob:
        """This job carrying the producer's trace ``context`` ('' = none)."""
        if not context:
            return self
        return self._replace(fields={**self.fields, Field.TRACE.value: context})


async def submit_job(backend: Backend, job: PreparedJob, queue: str) -> str:
    """``job.submit`` inside a producer span when the app traces jobs."""
    tracer = backend.tracer
    if tracer is None:
        return await job.submit(backend.broker, queue)
    with tracer.sending(queue, job.task, (job.job_id,)) as context:
        return await job.traced(context).submit(backend.broker, queue)


def payload_bytes(payload: str) -> int:
    """The size of ``payload`` as stored: UTF-8 bytes, not characters."""
    return len(payload) if payload.isascii() else len(payload.encode("utf-8", "surrogatepass"))


def check_payload(task_name: str, payload: str, limit: int) -> None:
    """:raises PayloadTooLarge: ``payload`` is over ``limit`` bytes (UTF-8)."""
    if len(payload) * 4 <= limit:
        return  # at most 4 bytes a character: under the limit without encoding
    size = payload_bytes(payload)
    if size > limit:
        raise PayloadTooLarge(
            f"task {task_name!r}: arguments are {size} bytes as JSON, over the "
            f"limit of {limit} (App(max_payload_bytes=...))")


def prepare_job(task_name: str, payload: str, options: EnqueueOptions) -> PreparedJob:
    """The broker's view of one enqueue: the effective ``options`` (defaults
    merged with the call's) are the only source of what is stored."""
    priority = options.priority if isinstance(options.priority, int) else 0
    fixed_id = isinstance(options.job_id, str)
    job_id = options.job_id if isinstance(options.job_id, str) else new_job_id()
    return PreparedJob(job_id, task_name, payload, priority, options.delay_ms(),
                       options.at_ms(), options.record_fields(), fixed_id, options.unique())
