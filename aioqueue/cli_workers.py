"""Operator commands about workers: ``aioqueue workers``, the worker's
``--metrics-port`` and ``aioqueue dashboard``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from .app import App
from .broker_admin import BrokerAdmin
from .broker_workers import WorkerRegistry, WorkerState
from .cli_common import CommandError
from .cli_format import age, out, out_json, table
from .job_stats import JobStats
from .supervisor import Supervisor

log = logging.getLogger("aioqueue.cli")


async def cmd_workers(app: App, admin: BrokerAdmin, args: argparse.Namespace) -> int:
    workers, total = await WorkerRegistry(admin.lane, admin.prefix).workers(limit=args.limit)
    if args.json:
        out_json(workers)
        return 0
    out(table(
        ["ID", "STATE", "HOST", "PID", "QUEUES", "CONCURRENCY", "RUNNING", "SUCCEEDED",
         "FAILED", "LOOP LAG", "LAST SEEN", "VERSION"],
        [[w.id, w.state.value, w.host, w.pid, ",".join(w.queues), w.concurrency, w.running,
          w.counters.get("succeeded", 0), w.counters.get("failed", 0),
          f"{w.loop_lag_s * 1000:.0f}ms", age(w.seen_age_s) + " ago", w.version]
         for w in workers]))
    for w in workers:
        if w.state is WorkerState.LOST and w.running_ids:
            out(f"lost worker {w.id}: its jobs recover when their leases expire: "
                 f"{' '.join(w.running_ids)}")
    lost = sum(w.state is WorkerState.LOST for w in workers)
    out(f"{len(workers) - lost} alive, {lost} lost ({total} in the registry)")
    return 0


def worker_metrics(supervisor: Supervisor, port: int | None) -> Callable[[], None]:
    """Serve the worker's Prometheus metrics when ``port`` is given (and keep
    its per-task statistics from then on); returns the function that stops
    it. A port that cannot be bound is logged, not fatal: metrics never stop
    a worker (a port in use is tried again until it is free)."""
    if port is None:
        return lambda: None
    try:
        from .metrics import WorkerSample, serve_worker_metrics
    except ImportError as exc:
        raise CommandError("--metrics-port needs: pip install 'aioqueue[metrics]'") from exc
    stats = supervisor.job_stats = JobStats(supervisor.app.tasks)

    def sample() -> WorkerSample:
        return WorkerSample(counters=dict(supervisor.counters), running=supervisor.running_jobs,
                            concurrency=supervisor.concurrency,
                            loop_lag_s=supervisor.lag_monitor.max_lag_s, tasks=stats.series())

    try:
        return serve_worker_metrics(sample, port, buckets=stats.buckets)
    except OSError as exc:
        log.warning("metrics not served on port %d: %s", port, exc)
        return lambda: None


def run_dashboard(args: argparse.Namespace) -> int:
    from .dashboard.serve import cmd_dashboard  # needs the [dashboard] extra

    return cmd_dashboard(args)
