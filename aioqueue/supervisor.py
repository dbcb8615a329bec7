"""The worker process: one event loop, one task group, every role a sibling.

::

    Supervisor.run
    └─ root task group
       ├─ signal watcher   1st SIGINT/SIGTERM: graceful stop; 2nd: exit now
       ├─ settler          sends finished jobs' outcomes in batches (one round trip each)
       ├─ lease renewer    extends running jobs' leases in one call per interval
       ├─ reaper           re-delivers jobs whose lease expired
       ├─ cancel listener  cancels running jobs whose cancellation was asked
       ├─ scheduler        enqueues periodic ticks (exactly once across supervisors)
       ├─ loop-lag monitor warns when task code blocks the event loop
       └─ work task group
          ├─ one fetcher per queue: claim (which also promotes due delayed
          │  jobs) when there is room; when idle, block on the queue's
          │  wake-up list until a job arrives or the next delayed job is due
          └─ one task per running job, bounded by ``concurrency``

The settler and the renewer outlive the work group, so jobs that finish
during the shutdown grace period are still settled and their leases renewed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import secrets
import signal
import socket
import time
import traceback
from collections.abc import Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus
from redis import exceptions as redis_errors

from .app import App
from .backoff import full_jitter
from .broker import ClaimedJob, Settlement
from .context import CallNext, JobContext, make_context
from .errors import BrokerError, ConfigurationError, Retry
from .keys import check_name
from .record import Field, error_entry
from .retry import InvalidRetryDelay, RetryPolicyError, policy_delay, requested_delay, safe_text
from .settings import WorkerSettings
from .task import Task

log = logging.getLogger("aioqueue.worker")

# NoScriptError: the script cache was flushed again and again during a call
_TRANSIENT = (BrokerError, redis_errors.ConnectionError, redis_errors.TimeoutError, OSError,
              redis_errors.NoScriptError)


def _cancelling() -> bool:
    """The task running this code is being cancelled from outside (asyncio)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _format_traceback(error: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(error))
    except Exception:
        return ""


class Supervisor:
    """Runs jobs from one or more queues.

    :param app: the app whose tasks run here.
    :param queues: queues to consume, in order (default: the app's queue).
    :param concurrency: most jobs running at once.
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
        self.queues = [check_name("queue", q) for q in (queues or [app.default_queue])]
        if not self.queues:
            raise ConfigurationError("at least one queue is needed")
        self.concurrency = concurrency
        self.burst = burst
        self.settings = settings or app.worker_settings
        self.handle_signals = handle_signals
        self.worker_id = worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}")
        self.counters: dict[str, int] = {
            "started": 0, "succeeded": 0, "failed": 0, "retried": 0, "requeued": 0,
            "cancelled": 0, "stale_settle": 0, "lost_leases": 0, "reaped": 0, "reaped_dead": 0,
        }
        self._in_flight = 0
        self._room = anyio.Event()
        # keyed by (job id, token): a job whose lease this worker lost may be
        # delivered to it again while the first delivery still runs
        self._active: dict[str, dict[tuple[str, str], ClaimedJob]] = {q: {} for q in self.queues}
        self._stop_scopes: dict[tuple[str, str], anyio.CancelScope] = {}
        self._cancel_requested: dict[tuple[str, str], str] = {}
        self._lost: set[tuple[str, str]] = set()
        self._shutdown_cancelled: set[tuple[str, str]] = set()
        # outcomes on their way to Redis: a renewal racing the settle sees
        # the lease gone, which is not a lost lease
        self._settling: set[tuple[str, str]] = set()
        self._pending: dict[str, list[tuple[ClaimedJob, Settlement]]] = {}
        self._settle_wakeup = anyio.Event()
        self._stopping = False
        self._stop_event = anyio.Event()
        self._root: anyio.CancelScope | None = None
        self._drained: set[str] = set()

    # -- control ------------------------------------------------------------

    @property
    def running_jobs(self) -> int:
        return self._in_flight

    def request_shutdown(self) -> None:
        """Stop gracefully (as the first SIGTERM does); a second call stops at once."""
        if self._stopping:
            if self._root is not None:
                self._root.cancel("second shutdown request")
            return
        log.info("worker %s: shutting down (grace %.1fs)", self.worker_id,
                 self.settings.shutdown_grace_s)
        self._stopping = True
        self._stop_event.set()
        self._signal_room()

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
            finally:
                with anyio.CancelScope(shield=True):
                    for hook in reversed(self.app.shutdown_hooks):
                        try:
                            await hook(self.app)
                        except Exception:
                            log.exception("on_shutdown hook %r failed", hook)

    async def _run(self, task_status: TaskStatus[None]) -> None:
        s = self.settings
        log.info("worker %s: queues=%s concurrency=%d lease=%.1fs", self.worker_id,
                 ",".join(self.queues), self.concurrency, s.lease_s)
        async with anyio.create_task_group() as root:
            self._root = root.cancel_scope
            if self.handle_signals:
                root.start_soon(self._watch_signals)
            root.start_soon(self._settler)
            root.start_soon(self._renewer)
            root.start_soon(self._reaper)
            root.start_soon(self._listen_for_cancels)
            root.start_soon(self._run_schedules)
            root.start_soon(self._watch_loop_lag)
            async with anyio.create_task_group() as work:
                for queue in self.queues:
                    work.start_soon(self._fetch, queue, work)
                work.start_soon(self._grace_keeper)
                task_status.started()
            # every job has ended; make sure each outcome reached Redis
            with anyio.move_on_after(max(5.0, self.app.broker.socket_timeout_s * 2)):
                while self._in_flight:
                    self._settle_wakeup.set()
                    await self._wait_room()
            root.cancel_scope.cancel("stopped")
        log.info("worker %s: stopped (%s)", self.worker_id,
                 ", ".join(f"{k}={v}" for k, v in self.counters.items() if v))

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
            while self._stop_scopes:
                await self._wait_room()
        for key, scope in list(self._stop_scopes.items()):
            self._shutdown_cancelled.add(key)
            scope.cancel("shutdown grace period over")

    async def _wait_room(self) -> None:
        await self._room.wait()

    def _signal_room(self) -> None:
        self._room.set()
        self._room = anyio.Event()

    # -- intake -------------------------------------------------------------

    async def _fetch(self, queue: str, work: anyio.abc.TaskGroup) -> None:
        s = self.settings
        broker = self.app.broker
        lease_ms = int(s.lease_s * 1000)
        failures = 0
        reservation: str | None = None
        next_due_ms = -1
        idle = False
        while not self._stopping:
            async with broker.blocking_client(f"aioqueue:{self.worker_id}:{queue}") as conn:
                try:
                    while not self._stopping:
                        room = self.concurrency - self._in_flight
                        if room <= 0:
                            await self._wait_room()
                            continue
                        reservation = reservation or secrets.token_hex(8)
                        count = min(room, s.claim_batch)
                        wait_s = self._idle_wait_s(next_due_ms) if idle else 0.0
                        if wait_s > 0:
                            # not cancelled at shutdown (the claim may already
                            # have run): it ends within block_s anyway
                            jobs, next_due_ms = await broker.claim_after_wait(
                                conn, queue, wait_s, count, lease_ms, self.worker_id,
                                reservation)
                        else:
                            jobs, next_due_ms = await broker.claim(
                                conn, queue, count, lease_ms, self.worker_id, reservation)
                        reservation = None
                        failures = 0
                        idle = not jobs
                        if jobs:
                            self._drained.discard(queue)
                            for job in jobs:
                                self._start_job(job, work)
                            continue
                        if self.burst and await self._burst_done(queue, next_due_ms):
                            return
                except _TRANSIENT as exc:
                    failures += 1
                    delay = full_jitter(failures, base=0.05, cap=s.reconnect_cap_s)
                    log.warning("fetcher %s: Redis error (%s); retrying in %.2fs",
                                queue, exc, delay)
                    await anyio.sleep(delay)

    def _idle_wait_s(self, next_due_ms: int) -> float:
        """How long an idle fetcher may block: until the next scheduled job is
        due, at most ``block_s`` (BLPOP's timeout has millisecond resolution)."""
        timeout = self.settings.block_s
        if next_due_ms >= 0:
            timeout = min(timeout, next_due_ms / 1000)
        if timeout <= 0:
            return 0.0
        return max(0.001, math.ceil(timeout * 1000) / 1000)

    async def _burst_done(self, queue: str, next_due_ms: int) -> bool:
        horizon_ms = self.settings.burst_horizon_s * 1000
        if self._in_flight or (0 <= next_due_ms <= horizon_ms):
            self._drained.discard(queue)
            return False
        counts = await self.app.broker.counts(queue)
        if counts["waiting"] or counts["running"]:
            self._drained.discard(queue)
            return False
        self._drained.add(queue)
        if self._drained >= set(self.queues):
            log.info("worker %s: burst mode, queues empty", self.worker_id)
            self.request_shutdown()
        return True

    # -- running jobs -------------------------------------------------------

    def _start_job(self, job: ClaimedJob, work: anyio.abc.TaskGroup) -> None:
        self._in_flight += 1
        self._active[job.queue][job.id, job.token] = job
        self.counters["started"] += 1
        work.start_soon(self._run_job, job)

    async def _run_job(self, job: ClaimedJob) -> None:
        started = time.monotonic()
        settlement = await self._execute(job)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job %s task=%s attempt=%d %.1fms -> %s", job.id, job.task, job.attempt,
                      (time.monotonic() - started) * 1000, settlement.kind)
        self._settling.add((job.id, job.token))
        self._pending.setdefault(job.queue, []).append((job, settlement))
        self._settle_wakeup.set()

    async def _execute(self, job: ClaimedJob) -> Settlement:
        task = self.app.tasks.get(job.task)
        if task is None:
            return self._dead(job, "TaskNotFound",
                              f"no task named {job.task!r} is registered in this worker")
        try:
            pos, kwargs = task.codec.decode(job.args)
        except Exception as exc:
            return self._dead(job, "InvalidPayload", f"stored arguments of task {job.task!r} "
                              f"failed validation: {safe_text(exc)}")
        if job.timeout_ms is not None:
            timeout = job.timeout_ms / 1000 if job.timeout_ms > 0 else None
        else:
            timeout = task.timeout
        max_tries = job.max_tries or task.max_tries
        ctx = None
        if task.codec.wants_context or self.app.middlewares:
            ctx = make_context(self.app.backend, job, self.worker_id, max_tries)
        key = (job.id, job.token)
        # one scope per job (each costs CPU on the hot path): its deadline is
        # the timeout; a cancel request or the shutdown cancels it explicitly
        # and says so in _cancel_requested / _shutdown_cancelled
        with anyio.CancelScope(
            deadline=anyio.current_time() + timeout if timeout else math.inf
        ) as scope:
            self._stop_scopes[key] = scope
            try:
                if self.app.middlewares and ctx is not None:
                    value = await self._through_middleware(ctx, task, pos, kwargs)
                else:
                    value = await task.invoke(ctx, pos, kwargs)
                try:
                    return Settlement(job.id, job.token, "ok", task.codec.encode_result(value),
                                      job.result_ttl_ms or 0)
                except Exception as exc:
                    return self._dead(job, "InvalidResult", f"return value of {job.task!r} "
                                      f"cannot be stored: {safe_text(exc)}")
            except Retry as exc:
                return self._failure(job, task, max_tries, exc, requested=True)
            except BaseException as exc:
                if isinstance(exc, anyio.get_cancelled_exc_class()) and (
                        scope.cancel_called or _cancelling()):
                    raise
                # anything else the task raised, SystemExit and a CancelledError
                # of its own included, is that job's failure, never the worker's
                if isinstance(exc, task.fail_on) or not isinstance(exc, task.retry_on):
                    max_tries = job.attempt
                return self._failure(job, task, max_tries, exc)
            finally:
                del self._stop_scopes[key]
        reason = self._cancel_requested.pop(key, None)
        if reason is not None:
            log.info("job %s task=%s cancelled: %s", job.id, job.task, reason)
            return Settlement(job.id, job.token, "cancel", reason)
        if key in self._shutdown_cancelled:
            # the shutdown grace period ended: hand the job straight back
            self._shutdown_cancelled.discard(key)
            return Settlement(job.id, job.token, "requeue")
        return self._failure(job, task, max_tries, TimeoutError(f"timed out after {timeout} s"))

    async def _through_middleware(self, ctx: JobContext, task: Task[Any, Any],
                                  pos: list[Any], kwargs: dict[str, Any]) -> Any:
        async def innermost() -> Any:
            return await task.invoke(ctx, pos, kwargs)

        chain: CallNext = innermost
        for mw in reversed(self.app.middlewares):
            chain = functools.partial(mw, ctx, chain)
        return await chain()

    def _cancel_running(self, job_id: str, reason: str) -> None:
        for key, scope in list(self._stop_scopes.items()):
            if key[0] == job_id and key not in self._cancel_requested:
                self._cancel_requested[key] = reason or "cancelled"
                scope.cancel("job cancelled")

    async def _listen_for_cancels(self) -> None:
        """Cancel requests arrive on each queue's cancel channel; a missed one
        is caught by the next lease renewal, which reports the flag."""
        channels = [self.app.broker.keys(q).cancel_channel for q in self.queues]
        failures = 0
        while True:
            pubsub = self.app.broker.client.pubsub()
            try:
                await pubsub.subscribe(*channels)
                failures = 0
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        data = msg["data"]
                        job_id = data.decode() if isinstance(data, bytes) else str(data)
                        if any(key[0] == job_id for key in self._stop_scopes):
                            reason = (await self.app.broker.job_fields(
                                self._queue_of(job_id), job_id, Field.CANCEL))[0]
                            self._cancel_running(job_id, reason or "cancelled")
            except _TRANSIENT as exc:
                failures += 1
                delay = full_jitter(failures, base=0.05, cap=self.settings.reconnect_cap_s)
                log.warning("cancel listener: Redis error (%s); retrying in %.2fs", exc, delay)
                await anyio.sleep(delay)
            finally:
                with anyio.move_on_after(2, shield=True), contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _queue_of(self, job_id: str) -> str:
        for queue, active in self._active.items():
            if any(key[0] == job_id for key in active):
                return queue
        return self.queues[0]

    def _dead(self, job: ClaimedJob, error_type: str, message: str, tb: str = "") -> Settlement:
        log.error("job %s task=%s attempt=%d dead-lettered: %s: %s", job.id, job.task,
                  job.attempt, error_type, message)
        return Settlement(job.id, job.token, "dead", error_entry(error_type, message, tb,
                                                                job.attempt))

    def _failure(self, job: ClaimedJob, task: Any, max_tries: int, error: BaseException,
                 *, requested: bool = False) -> Settlement:
        """A failed attempt: retry after the requested or the policy's delay,
        or dead-letter. A broken ``Retry`` delay or retry policy fails the job
        for good, with the reason."""
        error_type, message = type(error).__qualname__, safe_text(error)
        tb = "" if requested else _format_traceback(error)
        if requested:
            error_type, message = "Retry", "retry requested"
        if job.attempt >= max_tries:
            return self._dead(job, error_type, message, tb)
        try:
            delay = requested_delay(error.delay) if isinstance(error, Retry) else None
            if delay is None:
                delay = policy_delay(task.retry, job.attempt, error)
        except (InvalidRetryDelay, RetryPolicyError) as exc:
            return self._dead(job, type(exc).__name__,
                              f"{exc}; after {error_type}: {message}", tb)
        if not requested:
            log.warning("job %s task=%s attempt=%d/%d failed: %s: %s; retry in %.2fs",
                        job.id, job.task, job.attempt, max_tries, error_type, message, delay)
        return Settlement(job.id, job.token, "retry",
                          error_entry(error_type, message, tb, job.attempt),
                          int(delay * 1000))

    # -- settling -----------------------------------------------------------

    async def _settler(self) -> None:
        s = self.settings
        failures = 0
        while True:
            await self._settle_wakeup.wait()
            self._settle_wakeup = anyio.Event()
            batches, self._pending = self._pending, {}
            for queue, items in batches.items():
                while True:
                    try:
                        codes = await self.app.broker.settle(
                            queue, [st for _, st in items],
                            default_result_ttl_ms=int(self.app.result_ttl_s * 1000),
                            dead_letter_ttl_ms=int(self.app.dead_letter_ttl_s * 1000),
                        )
                        failures = 0
                        break
                    except _TRANSIENT as exc:
                        # settle is fenced and idempotent: sending it again is safe
                        failures += 1
                        delay = full_jitter(failures, base=0.05, cap=s.reconnect_cap_s)
                        log.warning("settle: Redis error (%s); retrying in %.2fs", exc, delay)
                        await anyio.sleep(delay)
                for (job, st), code in zip(items, codes, strict=True):
                    self._finish(job, st, code)
            self._signal_room()

    def _finish(self, job: ClaimedJob, st: Settlement, code: int) -> None:
        self._in_flight -= 1
        self._active[job.queue].pop((job.id, job.token), None)
        self._lost.discard((job.id, job.token))
        self._settling.discard((job.id, job.token))
        if code < 0:
            self.counters["stale_settle"] += 1
            log.warning("job %s: outcome %r refused, the lease (token %s) is no longer ours "
                        "(it expired and the job was re-delivered)", job.id, st.kind, job.token)
            return
        key = {"ok": "succeeded", "dead": "failed", "retry": "retried",
               "requeue": "requeued", "cancel": "cancelled"}.get(st.kind)
        if key:
            self.counters[key] += 1

    # -- leases -------------------------------------------------------------

    async def _renewer(self) -> None:
        s = self.settings
        lease_ms = int(s.lease_s * 1000)
        while True:
            await anyio.sleep(s.renew_every_s)
            for queue, active in self._active.items():
                jobs = [j for key, j in active.items() if key not in self._lost]
                if not jobs:
                    continue
                try:
                    codes = await self.app.broker.renew(
                        queue, [(j.id, j.token) for j in jobs], lease_ms)
                except _TRANSIENT as exc:
                    log.warning("lease renewal failed (%s); will retry", exc)
                    continue
                for job, code in zip(jobs, codes, strict=True):
                    if code == 2:
                        self._cancel_running(job.id, "cancelled")
                    elif code == 0 and (job.id, job.token) in active \
                            and (job.id, job.token) not in self._settling:
                        # counted once; its outcome will be refused (stale token)
                        self._lost.add((job.id, job.token))
                        self.counters["lost_leases"] += 1
                        log.warning("job %s: lease lost (it expired; the job may run "
                                    "elsewhere); its outcome will be refused", job.id)

    async def _reaper(self) -> None:
        s = self.settings
        dead_ms = int(self.app.dead_letter_ttl_s * 1000)
        # a gap between reaps much longer than the interval means Redis (or
        # every worker) stood still: hold reaping until renewals caught up
        stall_ms = int(max(1.0, 3 * s.reaper_interval_s) * 1000)
        hold_ms = int(max(2 * s.renew_every_s, s.reap_grace_s) * 1000)
        await anyio.sleep(s.reap_grace_s)
        while True:
            try:
                for queue in self.queues:
                    while True:
                        requeued, dead = await self.app.broker.reap(
                            queue, limit=100, max_deliveries=s.max_deliveries,
                            dead_letter_ttl_ms=dead_ms,
                            result_ttl_ms=int(self.app.result_ttl_s * 1000),
                            stall_ms=stall_ms, hold_ms=hold_ms)
                        self.counters["reaped"] += requeued
                        self.counters["reaped_dead"] += dead
                        if requeued or dead:
                            log.warning("queue %s: %d expired lease(s) re-delivered, %d "
                                        "dead-lettered at the delivery limit", queue,
                                        requeued, dead)
                        if requeued + dead < 100:
                            break
            except _TRANSIENT as exc:
                log.warning("reaper: Redis error (%s)", exc)
                # leases could not be renewed meanwhile either: give the
                # renewer one interval after reconnecting before reaping
                await anyio.sleep(s.reaper_interval_s)
                with contextlib.suppress(*_TRANSIENT):
                    await self.app.broker.client.ping()
                    await anyio.sleep(s.reap_grace_s)
                continue
            await anyio.sleep(s.reaper_interval_s)

    async def _run_schedules(self) -> None:
        """Wake at each tick of the schedules of our queues and fire it; the
        enqueue script's guard makes exactly one supervisor succeed."""
        schedules = [s for s in self.app.schedules.values() if s.queue in self.queues]
        if not schedules:
            return
        broker = self.app.broker
        handled: dict[str, int] = {}
        failures = 0
        while True:
            try:
                if not handled:
                    await self._prepare_schedules(schedules, handled)
                now_ms = await broker.server_time_ms()
                for sched in schedules:
                    tick = sched.latest_at_or_before(now_ms)
                    if tick <= handled[sched.name]:
                        continue
                    late = now_ms - tick > sched.grace_s * 1000
                    if late and sched.missed == "skip":
                        await broker.mark_tick(sched.queue, sched.name, tick, only_new=False)
                        log.info("schedule %s: skipped missed tick %d", sched.name, tick)
                    else:
                        job = sched.job(tick)
                        fired = await broker.fire_tick(
                            sched.queue, sched.name, tick, job.job_id, job.task,
                            job.payload, job.priority, job.fields)
                        if fired:
                            log.info("schedule %s: enqueued tick %d%s", sched.name, tick,
                                     " (missed, run once)" if late else "")
                    handled[sched.name] = tick
                failures = 0
                now_ms = await broker.server_time_ms()
                wake_ms = min(s.next_after(now_ms) for s in schedules)
                await anyio.sleep(min(1.0, max(0.0, (wake_ms - now_ms) / 1000)))
            except _TRANSIENT as exc:
                failures += 1
                delay = full_jitter(failures, base=0.05, cap=self.settings.reconnect_cap_s)
                log.warning("scheduler: Redis error (%s); retrying in %.2fs", exc, delay)
                await anyio.sleep(delay)

    async def _prepare_schedules(self, schedules: list[Any], handled: dict[str, int]) -> None:
        """First start of a schedule: its latest past tick counts as handled
        (a new schedule does not fire at once). Schedules no longer in the
        code are forgotten."""
        broker = self.app.broker
        now_ms = await broker.server_time_ms()
        for queue in {s.queue for s in schedules}:
            known = await broker.last_ticks(queue)
            current = {s.name for s in self.app.schedules.values() if s.queue == queue}
            await broker.forget_schedules(queue, [n for n in known if n not in current])
        for sched in schedules:
            first = sched.latest_at_or_before(now_ms)
            await broker.mark_tick(sched.queue, sched.name, first, only_new=True)
            last = (await broker.last_ticks(sched.queue)).get(sched.name, first)
            # a tick after the recorded one, missed while nobody ran, is handled
            # by the loop according to the schedule's policy
            handled[sched.name] = last

    async def _watch_loop_lag(self) -> None:
        interval = min(0.25, self.settings.lag_warn_s / 2)
        while True:
            before = time.monotonic()
            await anyio.sleep(interval)
            lag = time.monotonic() - before - interval
            if lag > self.settings.lag_warn_s:
                log.warning("event loop was blocked for %.2fs (lease %.1fs): a task is "
                            "running blocking code; its lease may expire", lag,
                            self.settings.lease_s)
