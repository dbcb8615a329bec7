"""Eager mode: enqueued jobs run inline, in the caller, with no server.

A unit-test convenience, not a substitute for a worker: what is the same and
what is not is listed in :func:`eager`'s docstring.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ..app import App
from ..broker import Broker, ClaimedJob
from ..errors import ConfigurationError
from ..results import ResultListener, Wakeup
from ..supervisor import Supervisor

# where an unsupported call would go: a socket that does not exist, so it
# fails at once instead of reaching a real server by accident
_NOWHERE = "unix:///nonexistent/aioqueue-eager-mode.sock"
_FINAL = ("succeeded", "failed", "cancelled")


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
        self._runner = Supervisor(app, concurrency=1, worker_id="eager")

    async def close(self) -> None:
        return None

    async def enqueue(
        self, queue: str, job_id: str, task: str, args_json: str, *, priority: int = 0,
        delay_ms: int = 0, at_ms: int | None = None,
        extra: Mapping[str, str | int] | None = None,
    ) -> int:
        if (queue, job_id) in self.records:
            return 0  # enqueue is idempotent by id, as on a server
        record = {"t": task, "a": args_json, "st": "queued", "et": str(_now_ms()),
                  "p": str(priority), "att": "1", "dlv": "0"}
        record.update({k: str(v) for k, v in (extra or {}).items()})
        self.records[queue, job_id] = record
        await self._run(queue, job_id, record)
        return 1

    async def enqueue_many(
        self, queue: str, jobs: Sequence[tuple[str, str, str, int, int, int | None,
                                                Mapping[str, str | int] | None]]
    ) -> list[int]:
        return [await self.enqueue(queue, job_id, task, args, priority=priority,
                                   delay_ms=delay, at_ms=at, extra=extra)
                for job_id, task, args, priority, delay, at, extra in jobs]

    async def _run(self, queue: str, job_id: str, record: dict[str, str]) -> None:
        while record["st"] not in _FINAL:
            attempt = int(record["att"])
            record.update(st="active", dlv=str(int(record["dlv"]) + 1), ts=str(_now_ms()),
                          w="eager")
            job = ClaimedJob(
                queue=queue, id=job_id, token=record["dlv"], task=record["t"],
                args=record["a"], attempt=attempt, max_tries=_opt_int(record.get("mt")),
                timeout_ms=_opt_int(record.get("to")), enqueued_ms=int(record["et"]),
                result_ttl_ms=_opt_int(record.get("rt")))
            settlement = await self._runner._execute(job)
            if settlement.kind in ("retry", "dead"):
                history = json.loads(record.get("eh", "[]"))
                record["eh"] = json.dumps([*history, json.loads(settlement.payload)])
            if settlement.kind == "ok":
                record.update(st="succeeded", r=settlement.payload)
            elif settlement.kind == "dead":
                record.update(st="failed", e=settlement.payload)
            elif settlement.kind == "cancel":
                record.update(st="cancelled", cx=settlement.payload)
            elif settlement.kind == "retry":
                # the backoff is skipped: the next attempt runs now
                record.update(st="scheduled", att=str(attempt + 1), e=settlement.payload)
        record["tf"] = str(_now_ms())

    async def progress(self, queue: str, job_id: str, token: str, payload: str) -> bool:
        record = self.records.get((queue, job_id))
        if record is None or record.get("dlv") != token:
            return False
        record["pg"] = payload
        return True

    async def cancel(self, queue: str, job_id: str, reason: str,
                     default_result_ttl_ms: int) -> str:
        # every eager job has ended by the time its handle exists
        return "finished" if (queue, job_id) in self.records else "missing"

    async def job_fields(self, queue: str, job_id: str, *fields: str) -> list[str | None]:
        record = self.records.get((queue, job_id), {})
        return [record.get(name) for name in fields]

    async def job_record(self, queue: str, job_id: str) -> dict[str, str]:
        return dict(self.records.get((queue, job_id), {}))

    async def server_time_ms(self) -> int:
        return _now_ms()

    async def counts(self, queue: str) -> dict[str, int]:
        dead = sum(1 for (q, _), r in self.records.items() if q == queue and r["st"] == "failed")
        return {"waiting": 0, "running": 0, "scheduled": 0, "dead": dead}

    async def stats(self, queue: str) -> dict[str, int]:
        return {}

    async def create_workflow(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigurationError(
            "eager mode does not run workflows (chain, group, chord): test them against "
            "a server with aioqueue.testing.drain or run_worker")


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


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
    nothing is persisted. Test those with :func:`drain` and
    :func:`run_worker` against a real server.
    """
    if app._broker is not None:
        raise ConfigurationError("the app is open (connected to a server); eager mode "
                                 "replaces its connection: use it on a closed app")
    broker = EagerBroker(app)
    app._broker, app._results = broker, _EagerResults(broker)
    try:
        for hook in app.startup_hooks:
            await hook(app)
        try:
            yield app
        finally:
            for hook in reversed(app.shutdown_hooks):
                await hook(app)
    finally:
        app._broker = app._results = None
