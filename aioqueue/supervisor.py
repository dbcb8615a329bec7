"""The worker process: one event loop, one task group, every role a sibling.

::

    Supervisor.run
    └─ root task group
       ├─ signal watcher   1st SIGINT/SIGTERM: graceful stop; 2nd: exit now
       ├─ settler          sends finished jobs' outcomes in batches   (settler.py)
       ├─ lease renewer    extends running jobs' leases               (leases.py)
       ├─ lease clock      stops runs whose lease ran out here        (leases.py)
       ├─ reaper           re-delivers jobs whose lease expired       (leases.py)
       ├─ cancel listener  cancels running jobs on request            (cancel_listener.py)
       ├─ scheduler        enqueues periodic ticks                    (scheduler.py)
       ├─ loop-lag monitor warns when task code blocks the loop      (roles.py)
       └─ work task group
          ├─ one fetcher per queue (per shard of a sharded queue),
          │  all sharing ``concurrency`` slots                       (fetcher.py)
          └─ one task per running job: the runner                    (runner.py)

Each running delivery is one :class:`~aioqueue.running.RunningJob`. The
settler, the renewer and the lease clock outlive the work group, so jobs that
finish during the shutdown grace period are still settled and their leases
renewed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Sequence

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .app import App
from .broker import ClaimedJob, Settlement
from .broker_workers import WorkerRegistry
from .cancel_listener import CancelListener
from .errors import ConfigurationError, WorkerStopped
from .fetcher import BurstTracker, Fetcher
from .heartbeat import Heartbeat, WorkerActivity
from .job_stats import JobStats
from .keys import check_name, logical_queue
from .leases import LeaseClock, Reaper, Renewer
from .logs import bind_job_fields
from .retry import safe_text
from .roles import COUNTERS, LoopLagMonitor, WorkerState
from .runner import JobRunner
from .running import RunningJob, RunningJobs, StopReason
from .scheduler import Scheduler
from .settings import WorkerSettings
from .settler import Settler

log = logging.getLogger("aioqueue.worker")


def default_queues(app: App) -> list[str]:
    """The queues of the app's registered tasks and schedules (the app's
    default queue when it has none), in the order they were declared."""
    return app.task_queues()


def exit_without_waiting_for_threads(supervisor: Supervisor, code: int) -> None:
    """End the process now if ``supervisor`` abandoned threads of sync tasks
    (called once its event loop has ended): Python would otherwise wait for
    them at exit, and one SIGTERM would not end the worker."""
    if not supervisor.abandoned_threads:
        return
    log.warning("worker %s: %d sync task run(s) abandoned after a timeout or cancel may "
                "still be running in threads; exiting without waiting for them",
                supervisor.worker_id, supervisor.abandoned_threads)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _worker_stopped(group: ExceptionGroup[Exception]) -> Exception:
    """A role stopped the worker for a permanent error (it logged one line):
    that error itself, not a group of one (the CLI prints it as one line)."""
    stopped, _ = group.split(WorkerStopped)
    if stopped is None:
        return group
    first: Exception = stopped
    while isinstance(first, ExceptionGroup):
        first = first.exceptions[0]
    return first


class Supervisor:
    """Runs jobs from one or more queues.

    :param app: the app whose tasks run here.
    :param queues: queues to consume, in order (default: the queues of the
        app's registered tasks and schedules).
    :param concurrency: most jobs running at once, over all queues.
    :param burst: stop once the queues have nothing waiting, running, or
        scheduled within ``settings.burst_horizon_s``.
    :param settings: overrides ``app.worker_settings``.
    :param handle_signals: install SIGINT/SIGTERM handlers (main thread only).
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 100,
        burst: bool = False,
        settings: WorkerSettings | None = None,
        handle_signals: bool = False,
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency must be >= 1")
        self.app = app
        self.queues = [check_name("queue", q) for q in (queues or default_queues(app))]
        if not self.queues:
            raise ConfigurationError("at least one queue is needed")
        self.concurrency = concurrency
        self.burst = burst
        self.settings = settings or app.worker_settings
        self.handle_signals = handle_signals
        self.worker_id = worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}")
        self.running = RunningJobs(concurrency)
        self.runner = JobRunner(app, self.worker_id)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        """started, succeeded, failed, retried, requeued, cancelled, ..."""
        self.heartbeat: Heartbeat | None = None
        self.lag_monitor = LoopLagMonitor(self.settings)
        self.job_stats: JobStats | None = None
        """Per task outcomes and run times; set (before :meth:`run`) by whatever
        reads them, the worker's metrics endpoint. None: not kept."""
        self._state: WorkerState | None = None
        self._settler: Settler | None = None
        self._fetchers: list[Fetcher] = []
        self._burst: BurstTracker | None = None
        self._stopping = False
        self._stop_event = anyio.Event()
        self._root: anyio.CancelScope | None = None

    # -- control ------------------------------------------------------------

    @property
    def running_jobs(self) -> int:
        return len(self.running)

    @property
    def abandoned_threads(self) -> int:
        """Plain ``def`` tasks cancelled (timeout, cancel, shutdown) while their
        thread ran on. Threads cannot be interrupted and would keep the process
        alive at exit: the CLI exits without waiting for them (see
        :func:`exit_without_waiting_for_threads`)."""
        return self.runner.abandoned_threads

    def request_shutdown(self) -> None:
        """Stop gracefully (as the first SIGTERM does): claim nothing more,
        give running jobs the grace period. A second call stops at once."""
        if self._stopping:
            if self._root is not None:
                self._root.cancel("second shutdown request")
            return
        log.info("worker %s: shutting down (grace %.1fs)", self.worker_id,
                 self.settings.shutdown_grace_s)
        self._stopping = True
        self._stop_event.set()
        for fetcher in self._fetchers:
            fetcher.interrupt()
        self.running.changed()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until shutdown is requested (or, in burst mode, the queues are empty)."""
        async with contextlib.AsyncExitStack() as stack:
            if not self.app.is_open:
                # size the pool from the concurrency: every running job may
                # settle, enqueue or read while the fetchers hold their own
                await stack.enter_async_context(
                    self.app.connected(max_connections=self.concurrency + 20))
            for hook in self.app.startup_hooks:
                await hook(self.app)
            try:
                await self._run(task_status)
            except ExceptionGroup as group:
                raise _worker_stopped(group) from None
            finally:
                with anyio.CancelScope(shield=True):
                    for hook in reversed(self.app.shutdown_hooks):
                        try:
                            await hook(self.app)
                        except Exception:
                            log.exception("on_shutdown hook %r failed", hook)

    def _build(self) -> WorkerState:
        app = self.app
        # the roles work on shards: a sharded queue is one fetcher, one reap,
        # one renewal call... per shard (each shard is one slot)
        shards = [shard for q in self.queues for shard in app.broker.shard_queues(q)]
        state = WorkerState(app.broker, self.settings, self.worker_id, shards,
                            self.running, stopping=self._stop_event, counters=self.counters)
        self._settler = Settler(state, result_ttl_ms=int(app.result_ttl_s * 1000),
                                dead_letter_ttl_ms=int(app.dead_letter_ttl_s * 1000))
        burst = BurstTracker(state, self.request_shutdown) if self.burst else None
        self._fetchers = [Fetcher(state, q, start=self._start_job, hand_back=self._hand_back,
                                  burst=burst) for q in shards]
        if len(shards) > self.concurrency:
            log.warning("worker %s: %d queues and shards to watch but concurrency %d: an idle "
                        "fetcher waits with a slot, so some shards wait up to block_s for "
                        "one (raise --concurrency)", self.worker_id, len(shards),
                        self.concurrency)
        if burst is not None:
            burst.fetchers = self._fetchers
        self._burst = burst
        return state

    async def _run(self, task_status: TaskStatus[None]) -> None:
        s = self.settings
        log.info("worker %s: queues=%s concurrency=%d lease=%.1fs", self.worker_id,
                 ",".join(self.queues), self.concurrency, s.lease_s)
        state = self._state = self._build()
        assert self._settler is not None
        schedules = [x for x in self.app.schedules.values() if x.queue in self.queues]
        async with anyio.create_task_group() as root:
            self._root = root.cancel_scope
            if self.handle_signals:
                root.start_soon(self._watch_signals)
            root.start_soon(self._settler.run)
            root.start_soon(Renewer(state).run)
            root.start_soon(LeaseClock(state).run)
            root.start_soon(Reaper(state, dead_letter_ttl_ms=int(self.app.dead_letter_ttl_s
                                                                 * 1000),
                                   result_ttl_ms=int(self.app.result_ttl_s * 1000)).run)
            root.start_soon(CancelListener(state).run)
            root.start_soon(Scheduler(state, schedules, self.app.schedules).run)
            root.start_soon(self.lag_monitor.run)
            if self._burst is not None:
                root.start_soon(self._burst.watch)
            if s.heartbeat:
                root.start_soon(self._heartbeat().run)
            async with anyio.create_task_group() as work:
                self._work = work
                for fetcher in self._fetchers:
                    work.start_soon(fetcher.run)
                work.start_soon(self._grace_keeper)
                task_status.started()
            # every job has ended; make sure each outcome reached Redis
            with anyio.move_on_after(max(5.0, state.broker.socket_timeout_s * 2)):
                while len(self.running):
                    self._settler.flush_soon()
                    await self.running.wait_change()
            root.cancel_scope.cancel("stopped")
        log.info("worker %s: stopped (%s)", self.worker_id,
                 ", ".join(f"{k}={v}" for k, v in state.counters.items() if v))

    def _heartbeat(self) -> Heartbeat:
        self.heartbeat = Heartbeat(
            WorkerRegistry(self.app.broker.lane, self.app.prefix), worker_id=self.worker_id,
            queues=self.queues, concurrency=self.concurrency, activity=self.activity,
            interval_s=self.settings.heartbeat_interval_s)
        return self.heartbeat

    def activity(self) -> WorkerActivity:
        """The ids of the jobs this worker runs, and its counters."""
        return WorkerActivity([r.job.id for r in self.running], dict(self.counters))

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("worker %s: got %s", self.worker_id, signal.Signals(signum).name)
                self.request_shutdown()

    async def _grace_keeper(self) -> None:
        """After the stop request, give running jobs the grace period, then
        cancel them: they are handed straight back to their queue."""
        await self._stop_event.wait()
        with anyio.move_on_after(self.settings.shutdown_grace_s):
            while any(not r.settling for r in self.running):
                await self.running.wait_change()
        for running in self.running:
            running.stop(StopReason.SHUTDOWN, "shutdown grace period over")

    # -- running jobs -------------------------------------------------------

    _work: TaskGroup

    def _start_job(self, job: ClaimedJob, lease_until: float) -> None:
        running = self.running.add(job, lease_until)
        self.counters["started"] += 1
        self._work.start_soon(self._run_job, running)

    def _hand_back(self, job: ClaimedJob) -> None:
        """A job claimed after the stop request: back to the front of its
        queue at once, not left to expire (which would count as a delivery)."""
        assert self._settler is not None
        self.counters["handed_back"] += 1
        running = self.running.add(job, time.monotonic() + self.settings.lease_s)
        self._settler.submit(running, Settlement(job.id, job.token, "requeue"))

    async def _run_job(self, running: RunningJob) -> None:
        assert self._settler is not None
        job = running.job
        bind_job_fields({"job_id": job.id, "task": job.task, "queue": job.queue,
                         "attempt": job.attempt, "delivery": job.token,
                         "worker_id": self.worker_id})
        tracer = self.app.backend.tracer
        try:
            if tracer is None:
                settlement = await self.runner.run(job, running)
            else:
                settlement = await self.runner.run_traced(tracer, job, running)
        except Exception as exc:  # a bug of ours: still only this job's failure
            log.exception("job %s: the worker failed to run it", job.id)
            settlement = self.runner.dead(job, "WorkerError", safe_text(exc))
        if self.job_stats is not None:
            self.job_stats.observe(logical_queue(job.queue), job.task, settlement.kind,
                                   time.monotonic() - running.started)
        if log.isEnabledFor(logging.DEBUG):
            duration_s = time.monotonic() - running.started
            log.debug("job %s task=%s attempt=%d %.1fms -> %s", job.id, job.task, job.attempt,
                      duration_s * 1000, settlement.kind,
                      extra={"duration_s": round(duration_s, 6), "outcome": settlement.kind})
        self._settler.submit(running, settlement)
