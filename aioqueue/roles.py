"""What the worker's roles share, and the one loop every role runs in.

Each role (fetcher, settler, renewer, lease clock, reaper, scheduler, cancel
listener, loop-lag monitor) is a small class whose ``step()`` does one round
of its work, so a test can drive it alone; ``run()`` repeats the step inside
:func:`keep_stepping`, where every error meets the one classifier: a
transient one backs off and retries, a permanent one stops the worker with
one clear line. No role loop dies of an exception it did not classify.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from .backoff import LogLimiter, RetryLoop
from .broker import Broker
from .running import RunningJobs
from .settings import WorkerSettings

log = logging.getLogger("aioqueue.worker")

COUNTERS = ("started", "succeeded", "failed", "retried", "requeued", "cancelled",
            "stale_settle", "lost_leases", "reaped", "reaped_dead", "handed_back",
            "claims", "renew_calls", "renewed", "settle_refused")


@dataclass(slots=True)
class WorkerState:
    """The state every role of one worker shares (and nothing more)."""

    broker: Broker
    settings: WorkerSettings
    worker_id: str
    queues: list[str]
    running: RunningJobs
    stopping: anyio.Event = field(default_factory=anyio.Event)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    log_limiter: LogLimiter = field(default_factory=LogLimiter)
    """Shared by the roles' retry loops: one warning per outage, not one per role."""


async def keep_stepping(name: str, step: Callable[[], Awaitable[float | None]],
                        state: WorkerState, *, oom_transient: bool = False) -> None:
    """Run ``step`` until it returns None; any other value is the pause in
    seconds before the next step. Errors go through the one retry loop
    (:class:`aioqueue.backoff.RetryLoop`): transient ones back off, a
    permanent one raises :class:`~aioqueue.errors.WorkerStopped`.
    ``oom_transient``: the step settles or keeps work already in Redis."""
    retry = RetryLoop(name, log, cap_s=state.settings.reconnect_cap_s,
                      oom_transient=oom_transient, limiter=state.log_limiter)
    while True:
        try:
            pause = await step()
        except Exception as exc:
            await retry.failed(exc)
            continue
        retry.succeeded()
        if pause is None:
            return
        if pause > 0:
            await anyio.sleep(pause)


class LoopLagMonitor:
    """Warns when task code blocks the event loop (leases may then expire)."""

    WINDOW_S = 10.0
    """:attr:`max_lag_s` is the longest stall of the last one or two windows
    of this length (what the worker's metrics report)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.interval = min(0.25, settings.lag_warn_s / 2)
        self.max_lag_s = 0.0
        self._window_start = time.monotonic()
        self._window_max = self._previous_max = 0.0

    async def step(self) -> float:
        """Sleep one interval; returns how late the loop woke up."""
        before = time.monotonic()
        await anyio.sleep(self.interval)
        now = time.monotonic()
        lag = now - before - self.interval
        if now - self._window_start > self.WINDOW_S:
            self._window_start, self._previous_max = now, self._window_max
            self._window_max = 0.0
        self._window_max = max(self._window_max, lag)
        self.max_lag_s = max(self._window_max, self._previous_max)
        if lag > self.settings.lag_warn_s:
            log.warning("event loop was blocked for %.2fs (lease %.1fs): a task is "
                        "running blocking code; its lease may expire", lag,
                        self.settings.lease_s)
        return lag

    async def run(self) -> None:
        while True:
            await self.step()
