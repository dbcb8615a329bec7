"""The scheduler: enqueues the ticks of periodic tasks. Every supervisor
runs one; the enqueue script's guard makes exactly one of them succeed per
tick."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from .roles import WorkerState, keep_stepping
from .schedule import Schedule

log = logging.getLogger("aioqueue.worker")


class Scheduler:
    """Fires the ticks of ``schedules`` (those of this worker's queues);
    ``all_schedules`` are every schedule the app declares (the others are
    forgotten in Redis)."""

    def __init__(self, state: WorkerState, schedules: Sequence[Schedule],
                 all_schedules: Mapping[str, Schedule]) -> None:
        self.state = state
        self.schedules = list(schedules)
        self.all_schedules = all_schedules
        self.handled: dict[str, int] = {}

    async def step(self) -> float:
        """Fire every tick due since the last step; returns the seconds until
        the next tick (at most 1 s, so a clock change is noticed)."""
        broker = self.state.broker
        if not self.handled:
            await self._prepare()
        now_ms = await broker.server_time_ms()
        for sched in self.schedules:
            tick = sched.latest_at_or_before(now_ms)
            if tick > self.handled[sched.name]:
                await self._fire(sched, tick, late=now_ms - tick > sched.grace_s * 1000)
                self.handled[sched.name] = tick
        now_ms = await broker.server_time_ms()
        wake_ms = min(s.next_after(now_ms) for s in self.schedules)
        return min(1.0, max(0.0, (wake_ms - now_ms) / 1000))

    async def _fire(self, sched: Schedule, tick: int, *, late: bool) -> None:
        broker = self.state.broker
        if late and sched.missed == "skip":
            await broker.mark_tick(sched.queue, sched.name, tick, only_new=False)
            log.info("schedule %s: skipped missed tick %d", sched.name, tick)
            return
        job = sched.job(tick)
        fired = await broker.fire_tick(sched.queue, sched.name, tick, job.job_id, job.task,
                                       job.payload, job.priority, job.fields, job.group)
        if fired:
            log.info("schedule %s: enqueued tick %d%s", sched.name, tick,
                     " (missed, run once)" if late else "")

    async def _prepare(self) -> None:
        """First start of a schedule: its latest past tick counts as handled
        (a new schedule does not fire at once). Schedules no longer in the
        code are forgotten."""
        broker = self.state.broker
        now_ms = await broker.server_time_ms()
        for queue in {s.queue for s in self.schedules}:
            known = await broker.last_ticks(queue)
            current = {s.name for s in self.all_schedules.values() if s.queue == queue}
            await broker.forget_schedules(queue, [n for n in known if n not in current])
        handled: dict[str, int] = {}
        for sched in self.schedules:
            first = sched.latest_at_or_before(now_ms)
            await broker.mark_tick(sched.queue, sched.name, first, only_new=True)
            # a tick after the recorded one, missed while nobody ran, is
            # handled by step() according to the schedule's policy
            handled[sched.name] = (await broker.last_ticks(sched.queue)).get(sched.name, first)
        self.handled = handled

    async def run(self) -> None:
        if self.schedules:
            await keep_stepping("scheduler", self.step, self.state)
