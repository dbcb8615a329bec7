"""Drive a producer and an in-process worker through a failover and measure
it: shared by the Sentinel and the Redis Cluster failover tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

import aioqueue

from .conftest import running


@dataclass
class FailoverRun:
    confirmed: dict[int, float] = field(default_factory=dict)  # n -> when enqueue returned
    unconfirmed: list[int] = field(default_factory=list)  # written, replica not confirmed
    refused: list[str] = field(default_factory=list)  # error type names
    done: set[int] = field(default_factory=set)
    triggered_at: float = 0.0
    switched_at: float = 0.0

    @property
    def window_s(self) -> float:
        """The longest stretch without a successful enqueue, from the trigger on."""
        times = sorted([self.triggered_at,
                        *(t for t in self.confirmed.values() if t > self.triggered_at)])
        return max(b - a for a, b in zip(times, times[1:], strict=False))

    def summary(self, what: str) -> str:
        return (f"{what}: no enqueue completed for {self.window_s:.2f}s ({len(self.refused)} "
                f"refused, {len(self.unconfirmed)} unconfirmed, {len(self.confirmed)} "
                f"confirmed, {len(set(self.confirmed) - self.done)} confirmed lost)")


async def run_through_failover(app: aioqueue.App, trigger: Callable[[], None],
                               switched: Callable[[], bool], *, before: int = 50,
                               after: int = 50, deadline_s: float = 120) -> FailoverRun:
    """Enqueue jobs one by one (each with its own id) while a worker runs
    them; after ``before`` confirmed enqueues call ``trigger``; stop once
    ``switched()`` and ``after`` more were confirmed; then wait until every
    confirmed or unconfirmed job ran."""
    run = FailoverRun()

    @app.task(name="failover_record")
    async def record(n: int) -> int:
        run.done.add(n)
        return n

    async with app, running(app):
        n = 0
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            n += 1
            try:
                await record.options(job_id=f"j{n}").enqueue(n)
                run.confirmed[n] = time.monotonic()
            except aioqueue.DurabilityUnconfirmed:
                run.unconfirmed.append(n)
            except aioqueue.BrokerError as exc:  # the primary is gone, not yet replaced
                run.refused.append(type(exc).__name__)
                await anyio.sleep(0.05)
            if not run.triggered_at and len(run.confirmed) >= before:
                trigger()
                run.triggered_at = time.monotonic()
            if run.triggered_at and not run.switched_at and n % 20 == 0 and switched():
                run.switched_at = time.monotonic()
            if run.switched_at and \
                    sum(t > run.switched_at for t in run.confirmed.values()) >= after:
                break
            await anyio.sleep(0.005)
        assert run.switched_at, "no failover within the deadline"
        # the worker follows too: every job written runs, before and after
        with anyio.fail_after(60):
            while not (set(run.confirmed) | set(run.unconfirmed)) <= run.done:
                await anyio.sleep(0.05)
    return run
