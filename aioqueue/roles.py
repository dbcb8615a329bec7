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

from .backoff import full_jitter
from .broker import Broker
from .errors import BrokerError
from .running import RunningJobs
from .settings import WorkerSettings

log = logging.getLogger("aioqueue.worker")

COUNTERS = ("started", "succeeded", "failed", "retried", "requeued", "cancelled",
            "stale_settle", "lost_leases", "reaped", "reaped_dead", "handed_back")


class RetryLoop:
    """Stand-in for ``backoff.RetryLoop`` until the one classifier lands:
    Redis errors back off, anything else stops the worker with one line."""

    def __init__(self, name: str, *, cap_s: float) -> None:
        self.name, self.cap_s, self.failures = name, cap_s, 0

    async def failed(self, exc: Exception) -> None:
        transient = isinstance(exc, BrokerError | ConnectionError | TimeoutError | OSError) \
            or type(exc).__name__ in ("ConnectionError", "TimeoutError", "NoScriptError")
        if not transient:
            log.error("%s: %s: %s; stopping the worker", self.name, type(exc).__name__, exc)
            raise exc
        self.failures += 1
        delay = full_jitter(self.failures, base=0.05, cap=self.cap_s)
        log.warning("%s: Redis error (%s); retrying in %.2fs", self.name, exc, delay)
        await anyio.sleep(delay)

    def succeeded(self) -> None:
        self.failures = 0


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


async def keep_stepping(name: str, step: Callable[[], Awaitable[float | None]],
                        settings: WorkerSettings) -> None:
    """Run ``step`` until it returns None; any other value is the pause in
    seconds before the next step. Errors go through the one retry loop."""
    retry = RetryLoop(name, cap_s=settings.reconnect_cap_s)
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

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.interval = min(0.25, settings.lag_warn_s / 2)

    async def step(self) -> float:
        """Sleep one interval; returns how late the loop woke up."""
        before = time.monotonic()
        await anyio.sleep(self.interval)
        lag = time.monotonic() - before - self.interval
        if lag > self.settings.lag_warn_s:
            log.warning("event loop was blocked for %.2fs (lease %.1fs): a task is "
                        "running blocking code; its lease may expire", lag,
                        self.settings.lease_s)
        return lag

    async def run(self) -> None:
        while True:
            await self.step()
