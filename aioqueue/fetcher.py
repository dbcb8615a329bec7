"""The fetcher: claims jobs of one queue when the worker has room.

When jobs are waiting it claims in batches (claim also promotes due delayed
jobs); when idle it blocks on the queue's wake-up list until a job arrives or
the next delayed job is due, with the claim sent behind the wait.

Slots are process-wide: a fetcher reserves them before it claims, so the
fetchers of several queues together never run more than ``concurrency``
jobs; an idle fetcher reserves only its share, leaving room for the others.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import time
from collections.abc import Callable

import anyio

from .broker import ClaimedJob
from .errors import BrokerError
from .lane import CommandLane
from .roles import WorkerState, keep_stepping

log = logging.getLogger("aioqueue.worker")


class BurstTracker:
    """In ``--burst`` mode: stop the worker once every queue is drained."""

    def __init__(self, state: WorkerState, stop: Callable[[], None]) -> None:
        self.state = state
        self.stop = stop
        self.drained: set[str] = set()
        self.fetchers: list[Fetcher] = []

    async def watch(self) -> None:
        """Each time the worker's last running job ends, cut the idle
        fetchers' waits short, so that each looks at its queue again now:
        a fetcher that found its queue empty while jobs of another queue
        (or shard) still ran would otherwise hold the stop for up to
        ``block_s``."""
        running = self.state.running
        while not self.state.stopping.is_set():
            await running.wait_change()
            if not len(running):
                for fetcher in self.fetchers:
                    fetcher.interrupt()

    async def queue_done(self, queue: str, next_due_ms: int) -> bool:
        """Whether ``queue`` has nothing waiting, running or due soon."""
        horizon_ms = self.state.settings.burst_horizon_s * 1000
        if len(self.state.running) or (0 <= next_due_ms <= horizon_ms):
            self.drained.discard(queue)
            return False
        counts = await self.state.broker.counts(queue)
        if counts["waiting"] or counts["running"]:
            self.drained.discard(queue)
            return False
        self.drained.add(queue)
        if self.drained >= set(self.state.queues):
            log.info("worker %s: burst mode, queues empty", self.state.worker_id)
            self.stop()
        return True


class Fetcher:
    """Claims jobs of ``queue``; ``start`` runs a claimed job, ``hand_back``
    returns one the worker will not run (it is stopping)."""

    def __init__(self, state: WorkerState, queue: str, *,
                 start: Callable[[ClaimedJob, float], None],
                 hand_back: Callable[[ClaimedJob], None],
                 burst: BurstTracker | None = None) -> None:
        self.state = state
        self.queue = queue
        self.start = start
        self.hand_back = hand_back
        self.burst = burst
        self.reservation: str | None = None
        # reservation ids: a random prefix per fetcher and a counter (one
        # urandom call per fetcher instead of one per claim)
        self._reservation_prefix = secrets.token_hex(8)
        self._reservations = itertools.count()
        self.next_due_ms = -1
        self.idle = False
        self.last_turn = 0
        self._wait_scope: anyio.CancelScope | None = None

    def interrupt(self) -> None:
        """End a blocking wait at once (the worker is stopping, or in burst
        mode its last job ended): the fetcher steps again at once."""
        if self._wait_scope is not None:
            self._wait_scope.cancel("worker stopping")

    async def step(self, conn: CommandLane) -> bool:
        """One claim round; False once this fetcher is done (stop, burst)."""
        running = self.state.running
        if self.state.stopping.is_set():
            return False
        if not running.has_turn(self.last_turn):
            await running.wait_turn(self, self.last_turn)
            return True
        wait_s = self._idle_wait_s() if self.idle else 0.0
        # an idle fetcher may wait a while: it holds only its share of slots
        share = running.free if wait_s <= 0 else max(1, running.free // len(self.state.queues))
        taken = running.reserve(min(share, self.state.settings.claim_batch))
        self.last_turn = running.next_turn()
        claimed_at = time.monotonic()
        try:
            jobs = await self._claim(conn, taken, wait_s)
        finally:
            running.release(taken)
        self.state.counters["claims"] += 1
        self.reservation = None
        self.idle = not jobs
        if self.state.stopping.is_set():
            for job in jobs:
                self.hand_back(job)
            return False
        lease_until = claimed_at + self.state.settings.lease_s
        for job in jobs:
            self.start(job, lease_until)
        if not jobs and self.burst is not None:
            return not await self.burst.queue_done(self.queue, self.next_due_ms)
        return True

    async def _claim(self, conn: CommandLane, count: int, wait_s: float) -> list[ClaimedJob]:
        broker, s = self.state.broker, self.state.settings
        lease_ms = int(s.lease_s * 1000)
        # kept until a claim succeeds: resending it after a lost reply
        # returns the jobs the first one took
        self.reservation = reservation = (
            self.reservation or f"{self._reservation_prefix}{next(self._reservations):x}")
        if wait_s <= 0:
            jobs, self.next_due_ms = await broker.claim(
                conn, self.queue, count, lease_ms, self.state.worker_id, reservation)
            return jobs
        with anyio.CancelScope() as scope:
            self._wait_scope = scope
            if self.state.stopping.is_set():
                scope.cancel()
            try:
                jobs, self.next_due_ms = await broker.claim_after_wait(
                    conn, self.queue, wait_s, count, lease_ms, self.state.worker_id,
                    reservation)
                return jobs
            finally:
                self._wait_scope = None
        # the stop request cut the wait: the claim behind it may have run on
        # the server all the same; its reservation returns what it took (and
        # claims nothing more) so that it can be handed back at once
        jobs, _ = await broker.claim(conn, self.queue, 0, lease_ms, self.state.worker_id,
                                     reservation)
        return jobs

    def _idle_wait_s(self) -> float:
        """How long an idle fetcher may block: until the next scheduled job is
        due, at most ``block_s`` (BLPOP's timeout has millisecond resolution)."""
        timeout = self.state.settings.block_s
        if self.next_due_ms >= 0:
            timeout = min(timeout, self.next_due_ms / 1000)
        if timeout <= 0:
            return 0.0
        return max(0.001, math.ceil(timeout * 1000) / 1000)

    async def _session(self) -> None:
        if self.state.stopping.is_set():
            return
        broker = self.state.broker
        async with broker.blocking_client(f"aioqueue:{self.state.worker_id}:{self.queue}") \
                as conn:
            while await self.step(conn):
                pass

    async def give_back_reservation(self) -> list[ClaimedJob]:
        """At the stop: a claim whose reply was lost (and not yet repeated)
        may have leased jobs; ask for them once, so they are handed back now
        instead of waiting for their lease to expire. Best effort."""
        reservation, self.reservation = self.reservation, None
        if reservation is None:
            return []
        broker, s = self.state.broker, self.state.settings
        with anyio.move_on_after(broker.socket_timeout_s):
            try:
                async with broker.blocking_client(
                        f"aioqueue:{self.state.worker_id}:{self.queue}") as conn:
                    jobs, _ = await broker.claim(conn, self.queue, 0, int(s.lease_s * 1000),
                                                 self.state.worker_id, reservation)
            except BrokerError as exc:
                log.warning("fetcher %s: could not hand back a pending reservation (%s); its "
                            "jobs, if any, come back when their lease expires", self.queue, exc)
                return []
            for job in jobs:
                self.hand_back(job)
            return jobs
        return []

    async def run(self) -> None:
        await keep_stepping(f"fetcher {self.queue}", self._session, self.state)
        await self.give_back_reservation()
