"""Per-task job counts and run-time histograms of one worker, in memory.

Kept only while something reads them (the worker's ``--metrics-port``: see
:mod:`aioqueue.metrics`): a worker without metrics pays one ``is None`` test
per job. Recording is a dictionary lookup and a bisect, in the event loop;
the scrape reads from the metrics server's thread, and copies under the GIL.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DURATION_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0, 3600.0)
"""Upper bounds of the run-time histogram (Prometheus' defaults stop at 10 s;
jobs run longer)."""

OUTCOMES = {"ok": "succeeded", "retry": "retried", "dead": "failed", "cancel": "cancelled",
            "requeue": "requeued"}
"""A settlement kind -> the ``outcome`` label."""

OTHER_TASK = "unregistered"
"""The ``task`` label of jobs whose task this worker does not register (their
names are not a closed set, so they share one label)."""


@dataclass(frozen=True, slots=True)
class TaskSeries:
    """One (queue, task, outcome) series: a count, a sum and the cumulative
    count per bucket bound (the last one is every observation: ``+Inf``)."""

    queue: str
    task: str
    outcome: str
    count: int
    sum_s: float
    cumulative: tuple[int, ...]


class JobStats:
    """Job outcomes and run times of one worker, by queue, task and outcome."""

    def __init__(self, tasks: Iterable[str], buckets: Sequence[float] = DURATION_BUCKETS_S
                 ) -> None:
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets must be distinct and increasing")
        self.tasks = frozenset(tasks)
        self.buckets = tuple(float(b) for b in buckets)
        # key -> [count, sum, per-bucket counts..., count above the last bound]
        self._series: dict[tuple[str, str, str], list[float]] = {}

    def observe(self, queue: str, task: str, kind: str, seconds: float) -> None:
        """Count one attempt of ``task`` that ended as ``kind`` (a settlement
        kind) after ``seconds``."""
        key = (queue, task if task in self.tasks else OTHER_TASK, OUTCOMES.get(kind, kind))
        row = self._series.get(key)
        if row is None:
            row = self._series[key] = [0.0] * (len(self.buckets) + 3)
        row[0] += 1
        row[1] += seconds
        row[2 + bisect.bisect_left(self.buckets, seconds)] += 1

    def series(self) -> list[TaskSeries]:
        """Every series so far (safe to call from another thread)."""
        out = []
        for key, row in sorted(dict(self._series).items()):
            counts = list(row)
            cumulative, total = [], 0
            for n in counts[2:]:
                total += int(n)
                cumulative.append(total)
            out.append(TaskSeries(*key, count=int(counts[0]), sum_s=counts[1],
                                  cumulative=tuple(cumulative)))
        return out
