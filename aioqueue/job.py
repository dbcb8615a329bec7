"""The producer's handle on one enqueued job."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
from pydantic import TypeAdapter

from .errors import JobCancelled, JobFailed, JobNotFound, MalformedJobRecord, ResultTimeout

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


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value else None


class Job(Generic[R]):
    """A handle on an enqueued job. Cheap to create; holds no connection.

    ``result()`` waits on a completion notification (one shared pub/sub
    listener per app), never by polling.
    """

    __slots__ = ("_adapter", "app", "id", "queue")

    def __init__(
        self, app: App, job_id: str, queue: str, adapter: TypeAdapter[Any] | None = None
    ) -> None:
        self.app = app
        self.id = job_id
        self.queue = queue
        self._adapter = adapter

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, queue={self.queue!r})"

    async def status(self) -> JobStatus:
        (status,) = await self.app.broker.job_fields(self.queue, self.id, "st")
        return JobStatus(status) if status else JobStatus.UNKNOWN

    async def info(self) -> JobInfo:
        rec = await self.app.broker.job_record(self.queue, self.id)
        if not rec:
            raise JobNotFound(f"job {self.id} has no record in queue {self.queue!r}",
                              job_id=self.id)
        try:
            return JobInfo(
                id=self.id,
                queue=self.queue,
                task=rec.get("t", ""),
                status=JobStatus(rec.get("st", "unknown")),
                attempt=int(rec.get("att", "1")),
                deliveries=int(rec.get("dlv", "0")),
                priority=int(rec.get("p", "0")),
                enqueued_ms=_int_or_none(rec.get("et")),
                started_ms=_int_or_none(rec.get("ts")),
                finished_ms=_int_or_none(rec.get("tf")),
                worker=rec.get("w"),
                error=json.loads(rec["e"]) if rec.get("e") else None,
            )
        except (ValueError, KeyError) as exc:
            raise MalformedJobRecord(f"job {self.id}: unreadable record: {exc}") from exc

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
            raise JobNotFound(
                f"job {self.id} has no record in queue {self.queue!r} "
                "(never enqueued, or its result TTL passed)", job_id=self.id)
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
