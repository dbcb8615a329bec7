"""The heartbeat role of a supervisor: every ``interval_s`` it writes what
the worker is (id, host, pid, version, queues, concurrency, start time) and
what it does (running job ids, counters, the longest event-loop stall) to
the worker registry, in one round trip on its own timer — never per job.

A failed beat is logged (once per outage) and retried at the next interval:
the registry is for people, so it never stops the worker.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

import anyio
from anyio.abc import TaskStatus

from .broker_workers import WorkerRegistry
from .errors import AioqueueError

log = logging.getLogger("aioqueue.worker")

RUNNING_IDS_SHOWN = 100
LAG_PROBE_S = 0.25


@functools.cache
def _version() -> str:
    # once per process: metadata.version scans the installed distributions
    # (~2 ms), and every beat reports it
    try:
        return metadata.version("aioqueue")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class WorkerActivity:
    """What a worker is doing now, as the heartbeat reports it."""

    running_ids: Sequence[str]
    counters: dict[str, int]


class Heartbeat:
    """One worker's heartbeat. ``step()`` writes one beat; ``run()`` beats
    every ``interval_s`` until cancelled and removes the worker when it ends."""

    def __init__(
        self,
        registry: WorkerRegistry,
        *,
        worker_id: str,
        queues: Sequence[str],
        concurrency: int,
        activity: Callable[[], WorkerActivity],
        interval_s: float = 5.0,
        retention_s: float = 3600.0,
    ) -> None:
        if interval_s <= 0 or retention_s <= interval_s:
            raise ValueError("need 0 < interval_s < retention_s")
        self.registry = registry
        self.worker_id = worker_id
        self.queues = list(queues)
        self.concurrency = concurrency
        self.activity = activity
        self.interval_s = interval_s
        self.retention_s = retention_s
        self.started_ms = int(time.time() * 1000)
        self.max_lag_s = 0.0
        self._failing = False

    def fields(self) -> dict[str, str | int | float]:
        now = self.activity()
        return {
            "host": socket.gethostname(), "pid": os.getpid(), "version": _version(),
            "queues": ",".join(self.queues), "concurrency": self.concurrency,
            "started": self.started_ms, "iv": round(self.interval_s * 1000),
            "running": len(now.running_ids),
            "running_ids": " ".join(list(now.running_ids)[:RUNNING_IDS_SHOWN]),
            "counters": json.dumps(now.counters, sort_keys=True),
            "lag_ms": round(self.max_lag_s * 1000),
        }

    async def step(self) -> bool:
        """Write one beat; False (logged once per outage) if Redis refused it."""
        try:
            await self.registry.beat(self.worker_id, self.fields(),
                                     retention_ms=round(self.retention_s * 1000))
        except AioqueueError as exc:
            if not self._failing:
                log.warning("worker %s: heartbeat not written (%s: %s); retrying every "
                            "%.1fs", self.worker_id, type(exc).__name__, exc, self.interval_s)
            self._failing = True
            return False
        if self._failing:
            log.info("worker %s: heartbeat written again", self.worker_id)
        self._failing = False
        self.max_lag_s = 0.0
        return True

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        registered = False
        try:
            while True:
                if not registered:
                    registered = await self._register_queues()
                await self.step()
                await self._sleep_measuring_lag()
        finally:
            with anyio.move_on_after(2, shield=True):
                try:
                    await self.registry.remove(self.worker_id)
                except AioqueueError:
                    pass  # it shows as lost, then expires

    async def _register_queues(self) -> bool:
        """Add the worker's queues to the queue registry (retried with the
        next beat until it works; a heartbeat failure is logged there)."""
        try:
            await self.registry.register_queues(self.queues)
        except AioqueueError:
            return False
        return True

    async def _sleep_measuring_lag(self) -> None:
        """Sleep one interval in short slices; a slice that overran by more
        than it should tells how long the event loop was blocked."""
        deadline = time.monotonic() + self.interval_s
        while (left := deadline - time.monotonic()) > 0:
            slice_s = min(LAG_PROBE_S, left)
            before = time.monotonic()
            await anyio.sleep(slice_s)
            self.max_lag_s = max(self.max_lag_s, time.monotonic() - before - slice_s)
