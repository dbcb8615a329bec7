"""The producer's handle on one enqueued job."""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
from pydantic import TypeAdapter

from .errors import (
    JobCancelled,
    JobError,
    JobFailed,
    JobNotFound,
    MalformedJobRecord,
    ResultExpired,
    ResultTimeout,
)

if TYPE_CHECKING:
    from .app import App

R = TypeVar("R")


class JobStatus(enum.StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    """Waiting to run."""
    SCHEDULED = "scheduled"
    """Delayed, or waiting for its next retry."""
    ACTIVE = "active"
    """Leased by a worker and running."""
    SUCCEEDED = "succeeded"
    """Finished with a result."""
    FAILED = "failed"
    """Failed for good: dead-lettered with its error."""
    CANCELLED = "cancelled"
    """Cancelled before it finished."""
    UNKNOWN = "unknown"
    """No record: never enqueued, or its record expired after its TTL."""

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class CancelOutcome(enum.StrEnum):
    """What ``Job.cancel()`` did."""

    CANCELLED = "cancelled"
    """It was queued or scheduled: removed, and it ends cancelled now."""
    REQUESTED = "requested"
    """It is running: its worker was told and will cancel the coroutine."""
    ALREADY_FINISHED = "finished"
    """It had already ended: nothing was done."""
    NOT_FOUND = "missing"
    """No record of the job (never enqueued, or expired)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Progress reported by a running task with ``ctx.progress()``."""

    fraction: float
    message: str


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One change in a job's life, from ``Job.events()``."""

    status: JobStatus
    progress: Progress | None = None


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A snapshot of a job record."""

    id: str
    queue: str
    task: str
    status: JobStatus
    attempt: int
    deliveries: int
    priority: int
    enqueued_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    worker: str | None
    error: dict[str, Any] | None
    errors: list[dict[str, Any]]
    """Every failed attempt's error (type, message, traceback, attempt)."""
    progress: Progress | None
    task_args: Any
    """The stored arguments (JSON)."""


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value else None


def _progress(raw: str | None) -> Progress | None:
    if not raw:
        return None
    data = json.loads(raw)
    return Progress(float(data.get("fraction", 0.0)), str(data.get("message", "")))


def _json_or_text(raw: str | None) -> Any:
    """Stored JSON, or the raw text when it is not JSON (a corrupt record must
    still be listable, e.g. among dead letters)."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _error(raw: str | None) -> dict[str, Any] | None:
    value = _json_or_text(raw)
    if value is None or isinstance(value, dict):
        return value
    return {"type": "MalformedError", "message": str(value), "traceback": ""}


def parse_info(job_id: str, queue: str, rec: dict[str, str]) -> JobInfo:
    """Build a JobInfo from a raw record; MalformedJobRecord if its
    bookkeeping fields are unreadable (stored arguments and errors that are
    not JSON are shown as text)."""
    try:
        return JobInfo(
            id=job_id,
            queue=queue,
            task=rec.get("t", ""),
            status=JobStatus(rec.get("st", "unknown")),
            attempt=int(rec.get("att", "1")),
            deliveries=int(rec.get("dlv", "0")),
            priority=int(rec.get("p", "0")),
            enqueued_ms=_int_or_none(rec.get("et")),
            started_ms=_int_or_none(rec.get("ts")),
            finished_ms=_int_or_none(rec.get("tf")),
            worker=rec.get("w"),
            error=_error(rec.get("e")),
            errors=[e for e in (_json_or_text(rec.get("eh")) or []) if isinstance(e, dict)],
            progress=_progress(rec.get("pg")),
            task_args=_json_or_text(rec.get("a")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedJobRecord(f"job {job_id}: unreadable record: {exc}") from exc


class Job(Generic[R]):
    """A handle on an enqueued job. Cheap to create; holds no connection.

    ``result()`` waits on a completion notification (one shared pub/sub
    listener per app), never by polling.
    """

    __slots__ = ("_adapter", "_enqueued_here", "app", "id", "queue")

    def __init__(
        self, app: App, job_id: str, queue: str, adapter: TypeAdapter[Any] | None = None,
        *, enqueued: bool = False,
    ) -> None:
        self.app = app
        self.id = job_id
        self.queue = queue
        self._adapter = adapter
        self._enqueued_here = enqueued

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, queue={self.queue!r})"

    async def status(self) -> JobStatus:
        (status,) = await self.app.broker.job_fields(self.queue, self.id, "st")
        return JobStatus(status) if status else JobStatus.UNKNOWN

    async def info(self) -> JobInfo:
        """Status, attempt, timestamps, worker, progress and errors."""
        rec = await self.app.broker.job_record(self.queue, self.id)
        if not rec:
            raise self._not_found()
        return parse_info(self.id, self.queue, rec)

    async def cancel(self, reason: str = "cancelled by request") -> CancelOutcome:
        """Cancel the job: at once if it waits; through its worker if it runs
        (it ends ``cancelled``, not retried); a no-op if it already ended."""
        outcome = await self.app.broker.cancel(
            self.queue, self.id, reason, int(self.app.result_ttl_s * 1000))
        return CancelOutcome(outcome)

    async def events(self) -> AsyncIterator[JobEvent]:
        """Yield the job's status changes and progress reports until it ends.

        The first event is the current state; no change is missed, including
        across a reconnect of the shared listener (the state is read again).
        """
        async with self.app.results.watch(self.queue, self.id) as changed:
            last: JobEvent | None = None
            while True:
                # messages first, in the order they were published; then the
                # record, which is the truth after any gap
                for message in changed.drain():
                    if message.startswith("progress "):
                        raw = message.removeprefix("progress ")
                        event = JobEvent(JobStatus.ACTIVE, _progress(raw))
                        if event != last:
                            yield event
                            last = event
                info = await self.info()
                current = JobEvent(info.status, info.progress)
                if current != last:
                    yield current
                    last = current
                if info.status.is_final:
                    return
                if not changed.messages:
                    await changed.wait()

    def _not_found(self) -> JobNotFound:
        if self._enqueued_here:
            return ResultExpired(
                f"job {self.id}: its record expired (results are kept for the result TTL)",
                job_id=self.id)
        return JobNotFound(
            f"job {self.id} has no record in queue {self.queue!r} "
            "(never enqueued, or its result TTL passed)", job_id=self.id)

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the job to end and return its result.

        :raises JobFailed: the job was dead-lettered (carries the error).
        :raises JobCancelled: the job was cancelled.
        :raises JobNotFound: no record (never enqueued, or expired).
        :raises ResultTimeout: it did not end within ``timeout`` seconds.
        """
        fields = ("st", "r", "e", "att")
        try:
            with anyio.fail_after(timeout):
                async with self.app.results.watch(self.queue, self.id) as changed:
                    while True:
                        values = await self.app.broker.job_fields(self.queue, self.id, *fields)
                        status = values[0]
                        if status in ("succeeded", "failed", "cancelled") or status is None:
                            break
                        await changed.wait()
                        changed.clear()
        except TimeoutError:
            raise ResultTimeout(
                f"job {self.id} did not finish within {timeout} s", job_id=self.id
            ) from None
        return self._outcome(*values)

    def _outcome(self, status: str | None, result: str | None, error: str | None,
                 attempt: str | None) -> R:
        if status is None:
            raise self._not_found()
        if status == "succeeded":
            raw = result if result is not None else "null"
            try:
                if self._adapter is not None:
                    return self._adapter.validate_json(raw)  # type: ignore[no-any-return]
                return json.loads(raw)  # type: ignore[no-any-return]
            except ValueError as exc:
                raise MalformedJobRecord(f"job {self.id}: unreadable result: {exc}") from exc
        if status == "cancelled":
            raise JobCancelled(f"job {self.id} was cancelled", job_id=self.id)
        err: dict[str, Any] = {}
        if error:
            try:
                err = json.loads(error)
            except ValueError:
                err = {"type": "MalformedError", "message": error}
        raise JobFailed(
            job_id=self.id,
            error_type=str(err.get("type", "Error")),
            message=str(err.get("message", "")),
            traceback=str(err.get("traceback", "")),
            attempts=int(err.get("attempt") or attempt or 1),
        )


async def gather(*jobs: Job[R], timeout: float | None = None) -> list[R]:
    """Wait for every job and return their results in order.

    All waits share the app's one listener connection, so gathering 10,000
    jobs costs no more connections than gathering one. The first failure
    (``JobFailed``, ``JobCancelled``…) is raised once every wait has ended;
    ``timeout`` bounds the whole gather (``ResultTimeout``).
    """
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    async def one(index: int, job: Job[R]) -> None:
        try:
            results[index] = await job.result()
        except (JobError, MalformedJobRecord) as exc:
            errors.append(exc)

    try:
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tg:
                for index, job in enumerate(jobs):
                    tg.start_soon(one, index, job)
    except TimeoutError:
        raise ResultTimeout(f"{len(jobs)} jobs did not all finish within {timeout} s",
                            job_id=",".join(j.id for j in jobs[:5])) from None
    if errors:
        raise errors[0]
    return results
