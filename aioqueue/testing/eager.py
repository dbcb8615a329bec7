"""Eager mode: enqueued jobs run inline, in the caller, with no server.

A unit-test convenience, not a substitute for a worker: what is the same and
what is not is listed in `eager`'s docstring.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ..app import App
from ..broker import Broker, ClaimedJob, Settlement
from ..errors import ConfigurationError
from ..lane import CommandLane
from ..record import FINAL_STATUSES
from ..record import Field as F
from ..results import ResultListener, Wakeup
from ..runner import JobRunner
from ..script_codes import CancelOutcome, EnqueueCode
from ..scripts import ScriptRunner

# where an unsupported call would go: a socket that does not exist, so it
# fails at once instead of reaching a real server by accident
_NOWHERE = "unix:///nonexistent/aioqueue-eager-mode.sock"


class _EagerScripts(ScriptRunner):
    """Workflows run inside Lua scripts on a server: refused here, clearly."""

    async def run(self, lane: CommandLane, name: str, keys: list[str], args: list[Any]) -> Any:
        if name.startswith("workflow"):
            raise ConfigurationError(
                "eager mode does not run workflows (chain, group, chord): test them against "
                "a server with aioqueue.testing.drain or run_worker")
        return await super().run(lane, name, keys, args)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class EagerBroker(Broker):
    """Keeps job records in memory and runs each job as it is enqueued,
    through the worker's own code for one job (decode and validate the stored
    JSON, timeout, middleware, validate and encode the result, classify the
    error, decide on a retry)."""

    def __init__(self, app: App) -> None:
        super().__init__(_NOWHERE, prefix=app.prefix, retries=0)
        self.app = app
        self.records: dict[tuple[str, str], dict[str, str]] = {}
        self._runner = JobRunner(app, worker_id="eager")
        self._runner.postpone_rate_limited = False  # no limiter here: a Retry
        self.scripts = _EagerScripts()

    async def close(self) -> None:
        return None

    async def enqueue(
        self, queue: str, job_id: str, task: str, args_json: str, *, priority: int = 0,
        delay_ms: int = 0, at_ms: int | None = None,
        extra: Mapping[str, str | int] | None = None,
    ) -> EnqueueCode:
        if (queue, job_id) in self.records:
            return EnqueueCode.EXISTS  # enqueue is idempotent by id, as on a server
        record: dict[str, str] = {F.TASK: task, F.ARGS: args_json, F.STATUS: "queued",
                  F.ENQUEUED: str(_now_ms()), F.PRIORITY: str(priority), F.ATTEMPT: "1",
                  F.DELIVERIES: "0"}
        record.update({k: str(v) for k, v in (extra or {}).items()})
        self.records[queue, job_id] = record
        await self._run(queue, job_id, record)
        return EnqueueCode.QUEUED

    async def enqueue_many(
        self, queue: str, jobs: Sequence[tuple[str, str, str, int, int, int | None,
                                                Mapping[str, str | int] | None]]
    ) -> list[EnqueueCode]:
        return [await self.enqueue(queue, job_id, task, args, priority=priority,
                                   delay_ms=delay, at_ms=at, extra=extra)
                for job_id, task, args, priority, delay, at, extra in jobs]

    async def _run(self, queue: str, job_id: str, record: dict[str, str]) -> None:
        while record[F.STATUS] not in FINAL_STATUSES:
            attempt = int(record[F.ATTEMPT])
            token = str(int(record[F.DELIVERIES]) + 1)
            record.update({F.STATUS: "active", F.DELIVERIES: token,
                           F.STARTED: str(_now_ms()), F.WORKER: "eager"})
            job = ClaimedJob(
                queue=queue, id=job_id, token=token, task=record[F.TASK],
                args=record[F.ARGS], attempt=attempt,
                max_tries=_opt_int(record.get(F.MAX_TRIES)),
                timeout_ms=_opt_int(record.get(F.TIMEOUT)),
                enqueued_ms=int(record[F.ENQUEUED]),
                result_ttl_ms=_opt_int(record.get(F.RESULT_TTL)))
            settlement = await self._runner.run(job)
            record.update(_settled(record, settlement))
        record[F.FINISHED] = str(_now_ms())

    async def progress(self, queue: str, job_id: str, token: str, payload: str) -> bool:
        record = self.records.get((queue, job_id))
        if record is None or record.get(F.DELIVERIES) != token:
            return False
        record[F.PROGRESS] = payload
        return True

    async def cancel(self, queue: str, job_id: str, reason: str,
                     default_result_ttl_ms: int) -> CancelOutcome:
        # every eager job has ended by the time its handle exists
        return (CancelOutcome.ALREADY_FINISHED if (queue, job_id) in self.records
                else CancelOutcome.NOT_FOUND)

    async def job_fields(self, queue: str, job_id: str, *fields: str) -> list[str | None]:
        record = self.records.get((queue, job_id), {})
        return [record.get(name) for name in fields]

    async def job_record(self, queue: str, job_id: str) -> dict[str, str]:
        return dict(self.records.get((queue, job_id), {}))

    async def server_time_ms(self) -> int:
        return _now_ms()

    async def counts(self, queue: str) -> dict[str, int]:
        dead = sum(1 for (q, _), rec in self.records.items()
                   if q == queue and rec[F.STATUS] == "failed")
        return {"waiting": 0, "running": 0, "scheduled": 0, "dead": dead}

    async def stats(self, queue: str) -> dict[str, int]:
        return {}



def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


def _settled(record: dict[str, str], settlement: Settlement) -> dict[str, str]:
    """The record fields a worker's settle would write for this outcome
    (a retry's backoff is skipped: the next attempt runs at once)."""
    kind, payload = settlement.kind, settlement.payload
    changes: dict[str, str] = {}
    if kind in ("retry", "dead"):
        history = json.loads(record.get(F.ERRORS, "[]"))
        changes[F.ERRORS] = json.dumps([*history, json.loads(payload)])
        changes[F.ERROR] = payload
    if kind == "ok":
        changes.update({F.STATUS: "succeeded", F.RESULT: payload})
    elif kind == "dead":
        changes[F.STATUS] = "failed"
    elif kind == "cancel":
        changes.update({F.STATUS: "cancelled", F.CANCEL: payload})
    elif kind == "retry":
        changes.update({F.STATUS: "scheduled", F.ATTEMPT: str(int(record[F.ATTEMPT]) + 1)})
    else:  # requeue: handed back without an attempt
        changes[F.STATUS] = "queued"
    return changes


class _EagerResults(ResultListener):
    """Every eager job has ended before anyone waits for it."""

    @contextlib.asynccontextmanager
    async def watch(self, queue: str, job_id: str) -> AsyncIterator[Wakeup]:
        wakeup = Wakeup()
        wakeup.set()
        yield wakeup


@contextlib.asynccontextmanager
async def eager(app: App) -> AsyncIterator[App]:
    """Run ``app``'s jobs inline: ``await task.enqueue(...)`` returns once the
    job has ended, and ``job.result()``, ``status()`` and ``info()`` answer
    from memory. No server is needed.

    The same as on a worker: argument validation and the JSON round trip
    (arguments are encoded at enqueue and decoded and validated again before
    the call, the result is validated and encoded, then parsed back by
    ``result()``), ``on_startup``/``on_shutdown`` hooks, middleware,
    ``JobContext``, timeouts, retries (``max_tries``, ``retry_on``,
    ``fail_on``, ``Retry``), dead-lettering reasons (``InvalidPayload``,
    ``TaskNotFound``, ``InvalidResult``...) and the errors ``result()``
    raises (``JobFailed`` with the same ``error_type``).

    Different, so do not rely on eager mode alone: jobs run at once and in
    the caller (no queue, no concurrency, no ordering by priority), delays,
    ``at=`` and retry backoffs are not waited for, there are no leases,
    re-deliveries, cancellation of running jobs, schedules or workflows, and
    nothing is persisted. Test those with `drain` and
    `run_worker` against a real server.
    """
    if app.is_open:
        raise ConfigurationError("the app is open (connected to a server); eager mode "
                                 "replaces its connection: use it on a closed app")
    broker = EagerBroker(app)
    app.backend.attach(broker, _EagerResults(broker))
    try:
        for hook in app.startup_hooks:
            await hook(app)
        try:
            yield app
        finally:
            for hook in reversed(app.shutdown_hooks):
                await hook(app)
    finally:
        app.backend.detach()
