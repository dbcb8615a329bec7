"""Run one job: decode its arguments, call the task through the middleware
under its timeout, and turn whatever happened into the job's settlement.

Nothing a task does reaches the worker as an exception: ``SystemExit``, a
``CancelledError`` of its own, a broken ``Retry`` or retry policy, an
exception that cannot even be printed — each becomes that job's outcome.
Once the worker cancels a run (``job.cancel()``, the timeout, the shutdown,
a lost lease), the reason it cancelled decides the outcome, whatever the
task did after: a task that swallows the cancellation does not succeed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import traceback
from typing import TYPE_CHECKING, Any

import anyio

from .broker import ClaimedJob, Settlement
from .broker_flow import postpone
from .context import CallNext, JobContext, make_context
from .errors import Retry
from .flow import RateLimited
from .record import error_entry
from .retry import InvalidRetryDelay, RetryPolicyError, retry_delay, safe_text
from .running import RunningJob, StopReason

if TYPE_CHECKING:
    from .app import App
    from .backend import JobTracer
    from .task import Task

log = logging.getLogger("aioqueue.worker")


def _cancelling() -> bool:
    """The task running this code is being cancelled from outside (asyncio)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


MAX_MESSAGE_CHARS = 8_192
MAX_TRACEBACK_CHARS = 65_536


def bounded(text: str, limit: int) -> str:
    """``text`` cut in the middle to at most about ``limit`` characters: an
    error text is stored with every attempt, so a task raising a 50 MB
    message must not write 50 MB per retry."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}\n... [{len(text) - 2 * keep} characters cut] ...\n{text[-keep:]}"


def _format_traceback(error: BaseException) -> str:
    try:
        return bounded("".join(traceback.format_exception(error)), MAX_TRACEBACK_CHARS)
    except Exception:
        return ""


class JobRunner:
    """Executes jobs of ``app``'s tasks; one per worker, shared by all jobs."""

    def __init__(self, app: App, worker_id: str) -> None:
        self.app = app
        self.worker_id = worker_id
        self.abandoned_threads = 0
        self.postpone_rate_limited = True
        """``RateLimited`` pauses the task's limiter and hands the job back;
        False (eager mode: no limiter, nothing waits): a ``Retry``."""
        """Runs of plain ``def`` tasks cancelled while their thread ran on: a
        thread cannot be interrupted, so it is abandoned (and, being a
        non-daemon thread, would hold the process at exit)."""

    async def run(self, job: ClaimedJob, running: RunningJob | None = None) -> Settlement:
        """Run one delivery of ``job``; ``running`` lets the worker stop it."""
        task = self.app.tasks.get(job.task)
        if task is None:
            return self.dead(job, "TaskNotFound",
                             f"no task named {job.task!r} is registered in this worker")
        try:
            pos, kwargs = task.codec.decode(job.args)
        except Exception as exc:
            return self.dead(job, "InvalidPayload", f"stored arguments of task {job.task!r} "
                             f"failed validation: {safe_text(exc)}")
        # the job's own timeout (0 = none) or else its task's
        timeout = task.timeout if job.timeout_ms is None else (
            job.timeout_ms / 1000 if job.timeout_ms > 0 else None)
        max_tries = job.max_tries or task.max_tries
        ctx = None
        if task.codec.wants_context or self.app.middlewares:
            ctx = make_context(self.app.backend, job, self.worker_id, max_tries)
        # one scope per job (each costs CPU on the hot path): its deadline is
        # the timeout; the worker cancels it through ``running.stop()``
        outcome: Settlement | None = None
        with anyio.CancelScope(
            deadline=anyio.current_time() + timeout if timeout else math.inf
        ) as scope:
            if running is not None:
                running.scope = scope
                if running.stop_reason is not None:  # stopped before it started
                    scope.cancel(running.stop_reason.value)
            outcome = await self._attempt(job, task, ctx, pos, kwargs, scope, max_tries)
        if running is not None:
            running.scope = None
        if scope.cancel_called or outcome is None:
            if not task.is_async:
                self.abandoned_threads += 1
            return self._stopped(job, task, max_tries, running, timeout)
        return outcome

    async def run_traced(self, tracer: JobTracer, job: ClaimedJob,
                         running: RunningJob | None = None) -> Settlement:
        """:meth:`run` inside a consumer span (an app that traces jobs): the
        task runs with that span current, and its outcome ends the span."""
        with tracer.processing(job, self.worker_id) as outcome:
            settlement = await self.run(job, running)
            outcome(settlement)
        return settlement

    async def _attempt(self, job: ClaimedJob, task: Task[Any, Any], ctx: JobContext | None,
                       pos: list[Any], kwargs: dict[str, Any], scope: anyio.CancelScope,
                       max_tries: int) -> Settlement | None:
        """Call the task once; None when the worker cancelled the call."""
        try:
            if ctx is None and task.is_async:
                # the usual task (no context, no middleware): called directly,
                # as Task.invoke would, without its coroutine in between
                value = await task.fn(*pos, **kwargs)
            elif self.app.middlewares and ctx is not None:
                value = await self._through_middleware(ctx, task, pos, kwargs)
            else:
                value = await task.invoke(ctx, pos, kwargs)
        except RateLimited as exc:
            if scope.cancel_called:
                return None
            if not self.postpone_rate_limited:
                return self._failed(job, task, max_tries, exc)
            # no try spent: the job waits with its task's paused limiter
            return await postpone(self.app.broker, job, exc)
        except Retry as exc:
            return None if scope.cancel_called else self._failed(job, task, max_tries, exc)
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()) and (
                    scope.cancel_called or _cancelling()):
                raise
            if scope.cancel_called:
                return None  # whatever the task did after being cancelled
            # anything else the task raised, SystemExit and a CancelledError
            # of its own included, is that job's failure, never the worker's
            if isinstance(exc, task.fail_on) or not isinstance(exc, task.retry_on):
                max_tries = job.attempt
            return self._failed(job, task, max_tries, exc)
        if scope.cancel_called:
            return None
        return self._succeeded(job, task, value)

    async def _through_middleware(self, ctx: JobContext, task: Task[Any, Any],
                                  pos: list[Any], kwargs: dict[str, Any]) -> Any:
        async def innermost() -> Any:
            return await task.invoke(ctx, pos, kwargs)

        chain: CallNext = innermost
        for mw in reversed(self.app.middlewares):
            chain = functools.partial(mw, ctx, chain)
        return await chain()

    def _succeeded(self, job: ClaimedJob, task: Task[Any, Any], value: Any) -> Settlement:
        try:
            result = task.codec.encode_result(value)
        except Exception as exc:
            return self.dead(job, "InvalidResult", f"return value of {job.task!r} cannot be "
                             f"stored: {safe_text(exc)}")
        return Settlement(job.id, job.token, "ok", result, job.result_ttl_ms or 0)

    def _stopped(self, job: ClaimedJob, task: Task[Any, Any], max_tries: int,
                 running: RunningJob | None, timeout: float | None) -> Settlement:
        reason = running.stop_reason if running is not None else None
        if reason is StopReason.CANCEL:
            text = running.cancel_reason if running is not None else ""
            log.info("job %s task=%s cancelled: %s", job.id, job.task, text)
            return Settlement(job.id, job.token, "cancel", text or "cancelled")
        if reason is StopReason.SHUTDOWN:
            # the shutdown grace period ended: hand the job straight back
            return Settlement(job.id, job.token, "requeue")
        if reason is StopReason.LEASE_LOST:
            # if the lease is still ours this hands the job back; if it was
            # re-delivered, the settle is refused (stale token)
            return Settlement(job.id, job.token, "requeue")
        return self._failed(job, task, max_tries, TimeoutError(f"timed out after {timeout} s"))

    def dead(self, job: ClaimedJob, error_type: str, message: str, tb: str = "") -> Settlement:
        log.error("job %s task=%s attempt=%d dead-lettered: %s: %s", job.id, job.task,
                  job.attempt, error_type, message)
        return Settlement(job.id, job.token, "dead",
                          error_entry(error_type, message, tb, job.attempt))

    def _failed(self, job: ClaimedJob, task: Task[Any, Any], max_tries: int,
                error: BaseException) -> Settlement:
        """A failed attempt: retry after the requested or the policy's delay,
        or dead-letter. A broken ``Retry`` delay or retry policy fails the job
        for good, with the reason."""
        requested = isinstance(error, Retry)
        if requested:
            error_type, message, tb = "Retry", "retry requested", ""
        else:
            error_type = type(error).__qualname__
            message = bounded(safe_text(error), MAX_MESSAGE_CHARS)
            tb = _format_traceback(error)
        if job.attempt >= max_tries:
            return self.dead(job, error_type, message, tb)
        try:
            delay = retry_delay(task.retry, job.attempt, error)
        except (InvalidRetryDelay, RetryPolicyError) as exc:
            return self.dead(job, type(exc).__name__, f"{exc}; after {error_type}: {message}", tb)
        if not requested:
            log.warning("job %s task=%s attempt=%d/%d failed: %s: %s; retry in %.2fs",
                        job.id, job.task, job.attempt, max_tries, error_type, message, delay)
        return Settlement(job.id, job.token, "retry",
                          error_entry(error_type, message, tb, job.attempt), int(delay * 1000))
