"""The producer's handle on one enqueued job."""

from __future__ import annotations

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
from .record import (
    FINAL_STATUSES,
    OUTCOME_FIELDS,
    Field,
    JobInfo,
    JobStatus,
    Progress,
    parse_error,
    parse_info,
    parse_progress,
)
from .script_codes import CancelOutcome

__all__ = ["CancelOutcome", "Job", "JobEvent", "JobInfo", "JobStatus", "Progress", "gather"]

if TYPE_CHECKING:
    from .backend import Backend
    from .listener import Wakeup

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One change in a job's life, from ``Job.events()``."""

    status: JobStatus
    progress: Progress | None = None


class Job(Generic[R]):
    """A handle on an enqueued job. Cheap to create; holds no connection.

    ``result()`` waits on a completion notification (one shared pub/sub
    listener per app), never by polling.
    """

    __slots__ = ("_adapter", "_backend", "_enqueued_here", "id", "queue")

    def __init__(
        self, backend: Backend, job_id: str, queue: str, adapter: TypeAdapter[Any] | None = None,
        *, enqueued: bool = False,
    ) -> None:
        self._backend = backend
        self.id = job_id
        self.queue = queue
        self._adapter = adapter
        self._enqueued_here = enqueued

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, queue={self.queue!r})"

    @property
    def backend(self) -> Backend:
        """The broker and listener of the app this job belongs to."""
        return self._backend

    async def status(self) -> JobStatus:
        """The job's status now (``JobStatus.UNKNOWN`` when it has no record:
        never enqueued, or expired after its result TTL)."""
        (status,) = await self._backend.broker.job_fields(self.queue, self.id, Field.STATUS)
        return JobStatus(status) if status else JobStatus.UNKNOWN

    async def info(self) -> JobInfo:
        """Status, attempt, timestamps, worker, progress and errors."""
        rec = await self._backend.broker.job_record(self.queue, self.id)
        if not rec:
            raise self._not_found()
        return parse_info(self.id, self.queue, rec)

    async def cancel(self, reason: str = "cancelled by request") -> CancelOutcome:
        """Cancel the job: at once if it waits; through its worker if it runs
        (it ends ``cancelled``, not retried); a no-op if it already ended."""
        return await self._backend.broker.cancel(
            self.queue, self.id, reason, self._backend.result_ttl_ms)

    async def events(self) -> AsyncIterator[JobEvent]:
        """Yield the job's status changes and progress reports until it ends.

        The first event is the current state; no change is missed, including
        across a reconnect of the shared listener (the state is read again).
        """
        async with self._backend.results.watch(self.queue, self.id) as changed:
            last: JobEvent | None = None
            while True:
                # messages first, in the order they were published; then the
                # record, which is the truth after any gap
                for message in changed.drain():
                    if message.startswith(PROGRESS_NOTICE):
                        raw = message.removeprefix(PROGRESS_NOTICE)
                        event = JobEvent(JobStatus.ACTIVE, parse_progress(raw))
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
        :raises ResultTimeout: it did not end within ``timeout`` seconds
            (``timeout=0``: return it if it has ended, never wait).
        :raises RedisUnavailable: Redis cannot be reached (also while waiting).
        """
        fields = OUTCOME_FIELDS
        try:
            with anyio.fail_after(timeout):
                async with self._backend.results.watch(self.queue, self.id) as changed:
                    while True:
                        values = await self._backend.broker.job_fields(self.queue, self.id, *fields)
                        status = values[0]
                        if status is None or status in FINAL_STATUSES:
                            break
                        await _until_it_may_have_ended(changed)
        except TimeoutError:
            # a job that has ended needs no waiting, even with timeout=0
            values = await self._backend.broker.job_fields(self.queue, self.id, *fields)
            if values[0] is not None and values[0] not in FINAL_STATUSES:
                raise ResultTimeout(
                    f"job {self.id} did not finish within {timeout} s", job_id=self.id
                ) from None
        return self._outcome(*values)

    def _outcome(self, status: str | None, result: str | None, error: str | None,
                 attempt: str | None) -> R:
        if status is None:
            raise self._not_found()
        if status == JobStatus.SUCCEEDED:
            raw = result if result is not None else "null"
            try:
                if self._adapter is not None:
                    return self._adapter.validate_json(raw)  # type: ignore[no-any-return]
                return json.loads(raw)  # type: ignore[no-any-return]
            except ValueError as exc:
                raise MalformedJobRecord(f"job {self.id}: unreadable result: {exc}") from exc
        if status == JobStatus.CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled", job_id=self.id)
        err = parse_error(error) or {}
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


async def _until_it_may_have_ended(changed: Wakeup) -> None:
    """Wait for a notice that the job may have ended. The notices that say
    it has not ('active': an attempt started; 'retrying'; 'progress ...')
    need no read of the record: one round trip less per awaited result. A
    wake-up without a notice (the listener reconnected) may hide an end."""
    while True:
        await changed.wait()
        notices = changed.drain()
        if not notices or not all(n in NOT_ENDED_NOTICES or n.startswith(PROGRESS_NOTICE)
                                  for n in notices):
            return


PROGRESS_NOTICE = "progress "
"""The prefix of a progress notice on a job's channel (``progress.lua``)."""

NOT_ENDED_NOTICES = frozenset({"active", "retrying"})
"""Notices on a job's channel, besides progress, that say it has not ended."""
