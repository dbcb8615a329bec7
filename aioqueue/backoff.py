"""The one retry/backoff helper: every loop that talks to Redis uses it.

A role loop (fetcher, settler, renewer, reaper, listeners, scheduler) reads::

    retry = RetryLoop("settler", log, cap_s=settings.reconnect_cap_s, oom_transient=True)
    while True:
        try:
            await one_step()
        except Exception as exc:
            await retry.failed(exc)   # transient: log (rate-limited) and back off
            continue                  # permanent: one error line, WorkerStopped
        retry.succeeded()             # after an outage: one "recovered" line

:func:`aioqueue.errors.classify` decides what is transient; this module only
decides how long to wait and what to say.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from .errors import AioqueueError, ErrorKind, WorkerStopped, classify, translated

T = TypeVar("T")



class LogLimiter:
    """Shared by the loops of one worker: one outage reaches every role at
    once, so the first role to meet an error type says so and the others
    stay quiet for ``every_s``."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def allow(self, topic: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(topic, -math.inf) < self.every_s:
            return False
        self._last[topic] = now
        return True


def full_jitter(failures: int, *, base: float, cap: float) -> float:
    """Capped exponential backoff with full jitter: a wait drawn from
    ``[0, min(cap, base * 2**failures)]``, so that many clients retrying after
    the same outage (a Redis restart) do not come back in step."""
    return random.uniform(0, min(cap, base * 2 ** min(failures, 32)))


@dataclass(frozen=True, slots=True)
class Backoff:
    """A full-jitter backoff: ``base_s`` doubling per failure, capped at ``cap_s``."""

    base_s: float
    cap_s: float

    def delay_s(self, failures: int) -> float:
        return full_jitter(failures, base=self.base_s, cap=self.cap_s)


COMMAND_RETRY = Backoff(base_s=0.01, cap_s=0.5)
"""The bounded in-call retry of one command (the lane's, and redis-py's pool
for pub/sub): short, because a caller is waiting on it. Loops that outlive an
outage use :class:`RetryLoop` on top."""


class RetryLoop:
    """The retry state of one loop.

    :param role: names the loop in log lines and in :class:`WorkerStopped`.
    :param logger: where the lines go.
    :param base_s: the first backoff's upper bound (doubles per failure).
    :param cap_s: the longest wait between attempts.
    :param oom_transient: retry :class:`~aioqueue.errors.RedisOutOfMemory`
        (for loops that settle or keep work already in Redis).
    :param limiter: shared by the loops of one worker so that an outage is
        one warning, not one per role (default: this loop's own, 30 s).
    """

    def __init__(
        self,
        role: str,
        logger: logging.Logger,
        *,
        base_s: float = 0.05,
        cap_s: float = 2.0,
        oom_transient: bool = False,
        limiter: LogLimiter | None = None,
    ) -> None:
        self.role = role
        self.logger = logger
        self.backoff = Backoff(base_s, cap_s)
        self.cap_s = cap_s
        self.oom_transient = oom_transient
        self.limiter = limiter or LogLimiter()
        self.failures = 0
        self._since = 0.0
        self._logged = False

    def note_failure(self, exc: Exception) -> float:
        """Classify ``exc`` and log it (rate-limited); return the backoff in
        seconds. A permanent error is logged once and raised as
        :class:`WorkerStopped` (the original error is its cause)."""
        error = translated(exc)
        name = type(error).__name__
        if classify(error, oom_transient=self.oom_transient) is ErrorKind.PERMANENT:
            self.logger.error(
                "%s: permanent error, stopping: %s: %s", self.role, name, error,
                # a bug, not a server answer: its traceback is worth one print
                exc_info=None if isinstance(error, AioqueueError) else error)
            raise WorkerStopped(f"{self.role}: {name}: {error}", role=self.role) from error
        self.failures += 1
        if self.failures == 1:
            self._since = time.monotonic()
        if self.limiter.allow(name):
            self._logged = True
            self.logger.warning(
                "%s: %s (%s); backing off and retrying (failure %d, waits up to %.1fs)",
                self.role, name, error, self.failures, self.cap_s)
        return self.backoff.delay_s(self.failures)

    async def failed(self, exc: Exception) -> None:
        """:meth:`note_failure`, then sleep the backoff."""
        await anyio.sleep(self.note_failure(exc))

    def succeeded(self) -> None:
        """The loop's call worked: reset, saying so once after an outage."""
        if self.failures:
            if self._logged:
                self.logger.info("%s: Redis reachable again after %d failure(s) in %.1fs",
                                 self.role, self.failures, time.monotonic() - self._since)
            self.failures = 0
            self._logged = False

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` until it returns, backing off on transient errors."""
        while True:
            try:
                result = await fn()
            except Exception as exc:
                await self.failed(exc)
                continue
            self.succeeded()
            return result
