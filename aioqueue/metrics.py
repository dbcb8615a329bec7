"""Prometheus metrics (``pip install 'aioqueue[metrics]'``).

Two sources, so that one scrape never multiplies Redis load by the number
of workers:

* **per worker** (``aioqueue worker --metrics-port 9100``): the worker's own
  counters, read from memory at scrape time — nothing is added to the path
  of a job;
* **per queue**, from Redis, served once by the dashboard process at
  ``/metrics``: depth by state, oldest waiting age, paused, live workers and
  the per-minute counters of the last minutes.

Labels come only from closed sets (queue, state, event); never job ids,
worker ids or arguments.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .broker_admin import QueueSummary
from .broker_stats import COUNTERS, MinuteStats
from .job_stats import TaskSeries

log = logging.getLogger("aioqueue.worker")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Supervisor.counters -> (metric suffix, help)
WORKER_COUNTERS = {
    "started": ("jobs_started", "Jobs this worker started"),
    "succeeded": ("jobs_succeeded", "Jobs this worker finished with a result"),
    "failed": ("jobs_failed", "Jobs this worker dead-lettered"),
    "retried": ("jobs_retried", "Attempts this worker failed and scheduled again"),
    "requeued": ("jobs_requeued", "Jobs this worker handed back (shutdown)"),
    "cancelled": ("jobs_cancelled", "Jobs this worker cancelled on request"),
    "stale_settle": ("stale_settles", "Outcomes refused because the lease was no longer ours"),
    "lost_leases": ("leases_lost", "Leases this worker found gone while the job ran"),
    "reaped": ("orphans_recovered", "Expired leases of other workers handed back"),
    "reaped_dead": ("orphans_dead_lettered", "Expired leases dead-lettered at their limit"),
    "handed_back": ("jobs_handed_back", "Jobs claimed during the stop and handed straight back"),
    "claims": ("claims", "Claim round trips this worker made (each leases up to a batch)"),
    "renew_calls": ("renew_calls", "Lease renewal round trips (one per queue per interval)"),
    "renewed": ("leases_renewed", "Leases this worker extended"),
    "settle_refused": ("settles_refused", "Outcomes the server refused even alone (a script "
                       "error): left to the reaper"),
}


@dataclass(frozen=True, slots=True)
class WorkerSample:
    """What a worker's metrics endpoint reports, read from memory."""

    counters: Mapping[str, int]
    running: int
    concurrency: int
    loop_lag_s: float
    tasks: Sequence[TaskSeries] = field(default_factory=list)
    """Per (queue, task, outcome): count and run-time histogram."""


class WorkerCollector(Collector):
    """Collects one worker's counters at scrape time (``sample`` is called
    from the HTTP server's thread: it must only read)."""

    def __init__(self, sample: Callable[[], WorkerSample], buckets: Sequence[float] = ()
                 ) -> None:
        self.sample = sample
        self.buckets = buckets
        """The upper bounds of the run-time histogram's buckets (``JobStats``')."""

    def collect(self) -> Iterator[Metric]:
        now = self.sample()
        for key, (name, text) in WORKER_COUNTERS.items():
            family = CounterMetricFamily(f"aioqueue_worker_{name}", text)
            family.add_metric([], now.counters.get(key, 0))
            yield family
        for name, text, value in [
            ("jobs_running", "Jobs running in this worker now", now.running),
            ("concurrency", "Most jobs this worker runs at once", now.concurrency),
            ("loop_lag_seconds", "Longest event-loop stall of the last 10 to 20 seconds",
             now.loop_lag_s),
        ]:
            gauge = GaugeMetricFamily(f"aioqueue_worker_{name}", text)
            gauge.add_metric([], value)
            yield gauge
        yield from task_families(now.tasks, self.buckets)


def task_families(series: Sequence[TaskSeries], buckets: Sequence[float]) -> list[Metric]:
    """Jobs by queue, task and outcome, and their run-time histograms."""
    labels = ["queue", "task", "outcome"]
    jobs = CounterMetricFamily("aioqueue_worker_jobs", "Attempts this worker ran, by queue, "
                               "task and outcome", labels=labels)
    duration = HistogramMetricFamily("aioqueue_worker_job_duration_seconds",
                                     "Run time of attempts (claim to outcome)", labels=labels)
    bounds = [*(str(float(b)) for b in buckets), "+Inf"]
    for s in series:
        values = [s.queue, s.task, s.outcome]
        jobs.add_metric(values, s.count)
        duration.add_metric(values, list(zip(bounds, s.cumulative, strict=True)), s.sum_s)
    return [jobs, duration]


def serve_worker_metrics(sample: Callable[[], WorkerSample], port: int,
                         addr: str = "0.0.0.0", *, buckets: Sequence[float] = (),
                         retry_s: float = 1.0) -> Callable[[], None]:
    """Serve a worker's metrics on ``addr:port`` from a daemon thread;
    returns a function that stops the server.

    A port in use (the process this one replaces, under ``--processes``, has
    not exited yet) is tried again every ``retry_s`` seconds from a daemon
    thread until it is free or the server is stopped; any other error raises.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(sample, buckets))
    stopped = threading.Event()
    serving: list[Callable[[], None]] = []

    def bind() -> bool:
        try:
            server, thread = start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False

        def stop_server() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        serving.append(stop_server)
        return True

    def keep_trying() -> None:
        while not stopped.wait(retry_s):
            if bind():
                log.info("metrics: serving on port %d now", port)
                if stopped.is_set():  # stopped while binding
                    serving.pop()()
                return

    if not bind():
        log.warning("metrics: port %d is in use; trying again every %.1fs", port, retry_s)
        threading.Thread(target=keep_trying, name="aioqueue-metrics-bind", daemon=True).start()

    def stop() -> None:
        stopped.set()
        while serving:
            serving.pop()()

    return stop


class _Static(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def queue_families(summaries: Sequence[QueueSummary], workers_by_queue: Mapping[str, int],
                   minutes: Mapping[str, Sequence[MinuteStats]]) -> list[Metric]:
    """Queue-level metric families from one bounded read of Redis."""
    jobs = GaugeMetricFamily("aioqueue_queue_jobs", "Jobs in a queue by state",
                             labels=["queue", "state"])
    oldest = GaugeMetricFamily("aioqueue_queue_oldest_waiting_seconds",
                               "Age of the oldest waiting job", labels=["queue"])
    paused = GaugeMetricFamily("aioqueue_queue_paused", "1 if the queue is paused",
                               labels=["queue"])
    workers = GaugeMetricFamily("aioqueue_queue_workers", "Live workers consuming the queue",
                                labels=["queue"])
    events = CounterMetricFamily("aioqueue_queue_events", "Queue counters kept in Redis "
                                 "(fleet-wide, monotonic)", labels=["queue", "event"])
    recent = GaugeMetricFamily("aioqueue_queue_finished_last_minute",
                               "Jobs per outcome in the last complete minute",
                               labels=["queue", "outcome"])
    for s in summaries:
        for state, n in [("waiting", s.waiting), ("scheduled", s.scheduled),
                         ("running", s.running), ("dead", s.dead)]:
            jobs.add_metric([s.name, state], n)
        oldest.add_metric([s.name], s.oldest_waiting_age_s or 0.0)
        paused.add_metric([s.name], 1 if s.paused else 0)
        workers.add_metric([s.name], workers_by_queue.get(s.name, 0))
        for event, n in sorted(s.counters.items()):
            events.add_metric([s.name, event], n)
        rows = minutes.get(s.name, [])
        if len(rows) >= 2:
            last_full = rows[-2]
            for outcome in COUNTERS:
                recent.add_metric([s.name, outcome], last_full.counts.get(outcome, 0))
    return [jobs, oldest, paused, workers, events, recent]


def render(families: Iterable[Metric]) -> bytes:
    """The text exposition of ``families``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(families))
    return generate_latest(registry)
