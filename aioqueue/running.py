"""The jobs a worker runs: one :class:`RunningJob` per delivery, and the
process-wide count of slots (``concurrency``) that every fetcher shares."""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio

from .broker import ClaimedJob


class StopReason(enum.Enum):
    """Why the worker cancelled a run (the outcome follows from it)."""

    CANCEL = "cancel"          # job.cancel() was asked: the job ends cancelled
    SHUTDOWN = "shutdown"      # the grace period ended: the job is handed back
    LEASE_LOST = "lease_lost"  # renewals failed until the local lease clock ran out


@dataclass(eq=False, slots=True)
class RunningJob:
    """One delivery of a job in this worker, from its claim to its settle.

    A job whose lease this worker lost may be delivered to it again while
    the first delivery still runs: each delivery (id, token) is its own
    ``RunningJob``.
    """

    job: ClaimedJob
    lease_until: float
    """Local lease clock (``time.monotonic()``): when the lease runs out if no
    renewal succeeds. Started before the claim was sent and moved on from
    before each successful renewal was sent, so it never ends after the
    server's deadline."""
    scope: anyio.CancelScope | None = None
    stop_reason: StopReason | None = None
    cancel_reason: str = ""
    lost: bool = False
    """A renewal found the lease gone: its outcome will be refused."""
    settling: bool = False
    """The outcome is on its way to Redis (a renewal racing it is not a loss)."""
    started: float = field(default_factory=time.monotonic)
    renewing: bool = False
    """A renewal of this delivery was sent (see ``leases.Renewer``)."""

    @property
    def key(self) -> tuple[str, str]:
        return self.job.id, self.job.token

    def stop(self, reason: StopReason, text: str = "") -> bool:
        """Cancel the run for ``reason``; the first reason wins. Returns
        False if the run was already stopped (or has ended)."""
        if self.stop_reason is not None or self.settling:
            return False
        self.stop_reason = reason
        self.cancel_reason = text
        if self.scope is not None:
            self.scope.cancel(reason.value)
        return True


class RunningJobs:
    """Every running job of one worker, and its concurrency slots.

    A fetcher :meth:`reserve` s slots before it claims and :meth:`release` s
    what it did not fill, so fetchers of several queues together never run
    more than ``capacity`` jobs.

    Fetchers take turns: each claim takes a ticket (:meth:`next_turn`), and
    when slots free up, the waiting fetcher whose last claim is the oldest
    goes first (:meth:`has_turn`). Without this, the fetcher that just
    claimed would be back in line before the others woke up, and one busy
    queue (or shard) would starve the rest.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.reserved = 0
        self.turns = 0
        self._jobs: dict[tuple[str, str], RunningJob] = {}
        self._changed = anyio.Event()
        self._waiting: dict[object, int] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(list(self._jobs.values()))

    @property
    def free(self) -> int:
        return self.capacity - len(self._jobs) - self.reserved

    def reserve(self, wanted: int) -> int:
        """Take up to ``wanted`` free slots; returns how many were taken."""
        taken = max(0, min(wanted, self.free))
        self.reserved += taken
        if self._waiting and self.free > 0:
            self.changed()  # a fetcher that let this one go first takes the rest
        return taken

    def next_turn(self) -> int:
        """A ticket for a claim: later claims wait behind older ones."""
        self.turns += 1
        return self.turns

    def has_turn(self, last_turn: int) -> bool:
        """Is there a free slot, and no waiting fetcher with an older claim?"""
        return self.free > 0 and all(last_turn <= t for t in self._waiting.values())

    async def wait_turn(self, fetcher: object, last_turn: int) -> None:
        """Wait for the next change, in line by ``last_turn`` (see :meth:`has_turn`)."""
        self._waiting[fetcher] = last_turn
        try:
            await self._changed.wait()
        finally:
            self._waiting.pop(fetcher, None)

    def release(self, count: int) -> None:
        self.reserved -= count
        self.changed()

    def add(self, job: ClaimedJob, lease_until: float) -> RunningJob:
        running = RunningJob(job, lease_until)
        self._jobs[job.id, job.token] = running
        return running

    def remove(self, running: RunningJob, *, notify: bool = True) -> None:
        """Forget a delivery; ``notify=False`` when the caller removes a batch
        and calls :meth:`changed` once."""
        job = running.job
        self._jobs.pop((job.id, job.token), None)
        if notify:
            self.changed()

    def in_queue(self, queue: str) -> list[RunningJob]:
        return [r for r in self._jobs.values() if r.job.queue == queue]

    def with_id(self, job_id: str) -> list[RunningJob]:
        return [r for r in self._jobs.values() if r.job.id == job_id]

    def changed(self) -> None:
        """Wake whoever waits for a slot or for the last job to end."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_change(self) -> None:
        await self._changed.wait()
