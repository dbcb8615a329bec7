"""Leases: the renewer extends running jobs' leases, the lease clock stops a
run whose lease ran out here, the reaper re-delivers jobs whose lease ran out
anywhere.

A run whose lease this worker lost (renewals failed until the local lease
clock ran out, or a renewal found the lease gone) is cancelled here: the job
may already run elsewhere, and an old run must not overlap the new delivery
by more than the lease.
"""

from __future__ import annotations

import logging
import time

import anyio

from .lane import CommandLane
from .record import Field
from .roles import WorkerState, keep_stepping
from .running import RunningJob, StopReason
from .script_codes import RenewCode

log = logging.getLogger("aioqueue.worker")


def lease_lost(state: WorkerState, running: RunningJob, why: str) -> None:
    """Stop a run whose lease is no longer (surely) ours; counted once."""
    if running.stop(StopReason.LEASE_LOST, why):
        running.lost = True
        state.counters["lost_leases"] += 1
        log.warning("job %s task=%s: %s; its run is cancelled here (the job may run "
                    "elsewhere)", running.job.id, running.job.task, why)


SLOW_RENEWAL_WARN_EVERY_S = 60.0


class Renewer:
    """Extends the leases of every running job, one call per queue.

    A renewal lands on the server one interval plus one round trip after the
    previous one; when that is longer than the lease, leases expire between
    two renewals (the job is re-delivered and this run stopped): it warns
    then, at most once a minute.
    """

    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self._quiet_until = 0.0
        self._client: CommandLane | None = None
        """Its own connection (see :meth:`run`); None: the shared lane."""
        self._stepping = False

    async def step(self) -> None:
        """Renew every queue's leases. A queue whose call fails (a shard whose
        primary fails over, say) does not hold up the others: they are renewed
        all the same, then the first error is raised."""
        failed: Exception | None = None
        for queue in self.state.queues:
            # a run that ended is renewed until its outcome is in Redis: a
            # slow settle (a slow link, a lane opening a new connection) must
            # not outlast the lease (a LOST answer while settling is ignored)
            jobs = [r for r in self.state.running.in_queue(queue) if not r.lost]
            if not jobs:
                continue
            try:
                self._stepping = True
                await self._renew(queue, jobs, self._client)
            except Exception as exc:
                failed = failed or exc
            finally:
                self._stepping = False
        if failed is not None:
            raise failed

    async def _renew(self, queue: str, jobs: list[RunningJob],
                     client: CommandLane | None) -> None:
        s = self.state.settings
        for running in jobs:
            running.renewing = True
        sent_at = time.monotonic()
        codes = await self.state.broker.renew(queue, [r.key for r in jobs],
                                              int(s.lease_s * 1000), client)
        self._check_round_trip(time.monotonic() - sent_at)
        counters = self.state.counters
        counters["renew_calls"] += 1
        for running, code in zip(jobs, codes, strict=True):
            counters["renewed"] += code is RenewCode.RENEWED
            await self._apply(running, code, sent_at + s.lease_s)

    async def _renew_newcomers(self, client: CommandLane) -> None:
        """Jobs claimed while a renewal waits for its reply: their first
        renewal is sent about one interval after their claim, on a second
        connection, instead of after that reply plus one more interval
        (interval + two round trips after the claim: on a slow link, longer
        than the lease)."""
        s = self.state.settings
        while True:
            await anyio.sleep(s.renew_every_s / 4)
            if not self._stepping:
                continue
            due_before = time.monotonic() + s.lease_s - s.renew_every_s
            due = [r for r in self.state.running if not r.renewing and not r.lost
                   and r.lease_until <= due_before]
            for queue in {r.job.queue for r in due}:
                try:
                    await self._renew(queue, [r for r in due if r.job.queue == queue], client)
                except Exception as exc:  # the renewer's next step renews them
                    log.debug("renewal of newly claimed jobs failed: %s", exc)

    def _check_round_trip(self, round_trip_s: float) -> None:
        s = self.state.settings
        now = time.monotonic()
        if s.renew_every_s + round_trip_s <= s.lease_s or now < self._quiet_until:
            return
        self._quiet_until = now + SLOW_RENEWAL_WARN_EVERY_S
        log.warning("a lease renewal took %.2fs to answer: renewed every %.2fs, a %.2fs lease "
                    "expires between two renewals at this round trip (the job is then "
                    "re-delivered and its run here stopped); raise lease_s, or lower "
                    "renew_interval_s", round_trip_s, s.renew_every_s, s.lease_s)

    async def _apply(self, running: RunningJob, code: RenewCode, lease_until: float) -> None:
        if code is RenewCode.RENEWED:
            running.lease_until = max(running.lease_until, lease_until)
        elif code is RenewCode.CANCEL_REQUESTED:
            running.lease_until = max(running.lease_until, lease_until)
            reason = (await self.state.broker.job_fields(
                running.job.queue, running.job.id, Field.CANCEL))[0]
            running.stop(StopReason.CANCEL, reason or "cancelled")
        elif code is RenewCode.LOST and not running.settling:
            lease_lost(self.state, running, "lease lost (it expired and was reaped)")

    async def _next(self) -> float:
        await self.step()
        return self.state.settings.renew_every_s

    async def run(self) -> None:
        # renewals travel on a connection of their own: on the shared lane a
        # renewal could wait for a free connection, or for a new one's
        # handshake (three more round trips), long enough on a slow link for
        # leases to expire (tests/test_degraded_network.py)
        name = f"aioqueue-renewals:{self.state.worker_id}"
        broker = self.state.broker
        async with broker.renewal_client(name) as client, \
                broker.renewal_client(name) as second, anyio.create_task_group() as tg:
            self._client = client
            tg.start_soon(self._renew_newcomers, second)
            await anyio.sleep(self.state.settings.renew_every_s)
            await keep_stepping("lease renewal", self._next, self.state, oom_transient=True)
            tg.cancel_scope.cancel()


class LeaseClock:
    """Stops runs whose local lease clock ran out: renewals kept failing
    (Redis unreachable, or too slow) for a lease past the lease's deadline.

    From its deadline on, the reaper may hand the job to another worker; one
    more lease of allowance lets a worker ride out a Redis freeze shorter than
    two leases without losing its jobs (the reaper's stall guard lets its
    renewals land first), while a worker cut off from a live Redis stops its
    run at most one lease after another delivery could have started.
    """

    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self.allowance_s = state.settings.lease_s

    def step(self) -> float:
        """Stop every run past its lease; returns the seconds until the next
        lease could run out."""
        now = time.monotonic() - self.allowance_s
        next_check = self.state.settings.renew_every_s
        for running in self.state.running:
            if running.settling or running.stop_reason is not None:
                continue
            left = running.lease_until - now
            if left <= 0:
                lease_lost(self.state, running, "no lease renewal succeeded for a lease past "
                           "its deadline")
            else:
                next_check = min(next_check, left)
        return next_check

    async def run(self) -> None:
        while True:
            await anyio.sleep(max(0.001, self.step()))


class Reaper:
    """Re-delivers (or dead-letters, at the delivery limit) jobs whose lease
    expired, in every queue of this worker."""

    def __init__(self, state: WorkerState, *, dead_letter_ttl_ms: int, result_ttl_ms: int
                 ) -> None:
        self.state = state
        self.dead_letter_ttl_ms = dead_letter_ttl_ms
        self.result_ttl_ms = result_ttl_ms
        self._resuming = False
        s = state.settings
        # a gap between reaps much longer than the interval means Redis (or
        # every worker) stood still: hold reaping until renewals caught up
        self.stall_ms = int(max(1.0, 3 * s.reaper_interval_s) * 1000)
        self.hold_ms = int(max(2 * s.renew_every_s, s.reap_grace_s) * 1000)

    async def step(self) -> tuple[int, int]:
        """Reap every queue once; returns (re-delivered, dead-lettered)."""
        if self._resuming:
            # the last step failed: leases could not be renewed meanwhile
            # either, give the renewer its grace before reaping
            await anyio.sleep(self.state.settings.reap_grace_s)
        self._resuming = True
        totals = (0, 0)
        failed: Exception | None = None
        for queue in self.state.queues:
            try:
                requeued, dead = await self._reap_queue(queue)
            except Exception as exc:  # the other queues (shards) are reaped all the same
                failed = failed or exc
                continue
            totals = (totals[0] + requeued, totals[1] + dead)
        if failed is not None:
            raise failed
        self._resuming = False
        return totals

    async def _reap_queue(self, queue: str) -> tuple[int, int]:
        s, total_requeued, total_dead = self.state.settings, 0, 0
        while True:
            requeued, dead = await self.state.broker.reap(
                queue, limit=100, max_deliveries=s.max_deliveries,
                dead_letter_ttl_ms=self.dead_letter_ttl_ms, result_ttl_ms=self.result_ttl_ms,
                stall_ms=self.stall_ms, hold_ms=self.hold_ms)
            self.state.counters["reaped"] += requeued
            self.state.counters["reaped_dead"] += dead
            total_requeued, total_dead = total_requeued + requeued, total_dead + dead
            if requeued or dead:
                log.warning("queue %s: %d expired lease(s) re-delivered, %d dead-lettered at "
                            "the delivery limit", queue, requeued, dead)
            if requeued + dead < 100:
                return total_requeued, total_dead

    async def _next(self) -> float:
        await self.step()
        return self.state.settings.reaper_interval_s

    async def run(self) -> None:
        # the first reap at once: it records when the queue was last reaped,
        # which the stall guard needs to see a Redis freeze that comes soon
        # after this worker started (leases held elsewhere are protected by
        # the same guard and by the other workers' earlier reaps)
        await keep_stepping("reaper", self._next, self.state, oom_transient=True)
