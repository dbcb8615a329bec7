"""Flow control in Redis (broker layer): rate limits stored per queue, the
limiter pause of ``RateLimited``, and what operators see of both.

Keys (all in the queue's slot, next to those in ``keys.py``):

==================  ======  ==============================================
key                 type    holds
==================  ======  ==============================================
``limits``          hash    ``t:<task>`` / ``q``: limits declared by the app;
                            ``o:t:<task>`` / ``o:q``: operator overrides
                            (win; ``off`` = none). Value ``count period_ms burst``
``limiter``         hash    the same scopes -> GCRA state (TAT, microseconds)
``held``            zset    task -> ms when its next held job may start
``held:<task>``     list    ids held back by the task's limiter, FIFO
==================  ======  ==============================================

The claim script enforces the limits (``lua/includes/flow_limits.lua``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from .broker import Broker, ClaimedJob, Settlement
from .connection import translate_errors
from .errors import ConfigurationError
from .flow import QUEUE_SCOPE, FlowKeys, RateLimit, RateLimited, UniqueKey, scope_field
from .keys import QueueKeys, check_name, check_task_name
from .script_codes import EnqueueCode, enqueue_code
from .scripts import load_script

log = logging.getLogger("aioqueue.flow")

OVERRIDE = "o:"
OFF = "off"
PAUSE = "p:"


class Lane(Protocol):
    async def execute(self, *args: Any, timeout_s: float | None = -1.0) -> Any: ...

    async def execute_many(self, commands: Sequence[Sequence[Any]],
                           timeout_s: float | None = -1.0) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class LimitInfo:
    """One limiter of a queue as an operator sees it.

    ``task`` is None for the queue-wide limit. ``override`` is the operator's
    limit (``"off"``: none, whatever the code declares), ``effective`` the
    one the claim script applies. ``tokens``: starts allowed right now;
    ``next_start_ms``: ms until the next start is allowed (0 = now);
    ``held``: jobs held back by this limiter.
    """

    task: str | None
    declared: RateLimit | None
    override: RateLimit | str | None
    effective: RateLimit | None
    tokens: int | None
    next_start_ms: int
    held: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _mapping(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {_text(k): _text(v) for k, v in raw.items()}
    items = list(raw or [])
    return {_text(items[i]): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _task_of(field: str) -> str | None:
    return None if field == QUEUE_SCOPE else field.removeprefix("t:")


def _state(limit: RateLimit | None, tat_us: int, pause_us: int, now_us: int
           ) -> tuple[int | None, int]:
    """(tokens now, ms until the next start) of a GCRA limiter, as the claim
    script reads it (``flow_limits.lua``); tokens None = no limit."""
    if pause_us > now_us:
        return 0, -(-(pause_us - now_us) // 1000)
    if limit is None:
        return None, 0
    interval = limit.period_ms * 1000 / limit.count
    tau = (limit.burst - 1) * interval
    tat_us = min(tat_us, int(now_us + tau + interval))
    if tat_us - now_us > tau:
        return 0, int(-(-(tat_us - tau - now_us) // 1000))
    return int((tau - max(tat_us - now_us, 0)) / interval + 1e-9) + 1, 0


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


class FlowLimits:
    """Rate limits of the queues of one key prefix, through a command lane."""

    def __init__(self, lane: Lane, prefix: str) -> None:
        self.lane = lane
        self.prefix = prefix
        self._pause_script = load_script("limiter_pause")

    def keys(self, queue: str) -> FlowKeys:
        return FlowKeys(QueueKeys(self.prefix, check_name("queue", queue)))

    async def _many(self, where: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
        with translate_errors(where):
            replies = await self.lane.execute_many(commands)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    async def declare(self, queue: str, declared: Mapping[str | None, RateLimit | None]
                      ) -> None:
        """Store the limits written in code (task name, None = the queue);
        a None limit removes a declaration the code no longer makes.
        Operator overrides are left alone."""
        fk = self.keys(queue)
        commands: list[tuple[Any, ...]] = []
        for task, limit in declared.items():
            field = scope_field(None if task is None else check_task_name(task))
            if limit is None:
                commands.append(("HDEL", fk.limits, field))
            else:
                commands.append(("HSET", fk.limits, field, limit.encode()))
        if commands:
            await self._many(fk.queue.base, commands)

    async def set_override(self, queue: str, task: str | None, limit: RateLimit | None) -> None:
        """An operator's limit for a task (None = the queue), applied by the
        next claim on every worker; ``limit=None`` turns limiting off."""
        await self._override(queue, task, OFF if limit is None else limit.encode())

    async def clear_override(self, queue: str, task: str | None) -> None:
        """Back to the limit declared in code (if any)."""
        await self._override(queue, task, None)

    async def _override(self, queue: str, task: str | None, value: str | None) -> None:
        fk = self.keys(queue)
        field = OVERRIDE + scope_field(None if task is None else check_task_name(task))
        write: tuple[Any, ...] = (("HDEL", fk.limits, field) if value is None
                                  else ("HSET", fk.limits, field, value))
        commands: list[tuple[Any, ...]] = [write]
        if task is not None:
            # held jobs are looked at again by the next claim, under the new limit
            commands.append(("ZADD", fk.held, "XX", 0, task))
        commands.append(("RPUSH", fk.queue.wake, "1"))
        await self._many(fk.queue.base, commands)

    async def pause(self, queue: str, task: str, retry_after_ms: int) -> int:
        """Stop ``task``'s limiter for ``retry_after_ms`` on every worker
        (what ``RateLimited`` does); returns the server time (ms) it ends."""
        if isinstance(retry_after_ms, bool) or not isinstance(retry_after_ms, int) or not (
                0 <= retry_after_ms <= 30 * 86_400_000):
            raise ConfigurationError(f"pause must be 0..30 days in ms, got {retry_after_ms!r}")
        fk = self.keys(queue)
        keys = [fk.limits, fk.limiter, fk.held]
        args = [fk.queue.base, check_task_name(task), retry_after_ms]
        script = self._pause_script
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        with translate_errors(fk.queue.base):
            try:
                return int(await self.lane.execute(*command))
            except NoScriptError:
                await self.lane.execute("SCRIPT", "LOAD", script.source)
                return int(await self.lane.execute(*command))

    async def limits(self, queue: str) -> list[LimitInfo]:
        """Every limiter of the queue: declared, overridden, paused or holding
        jobs back, sorted (the queue's first)."""
        fk = self.keys(queue)
        config, state, held, now = await self._many(fk.queue.base, [
            ("HGETALL", fk.limits), ("HGETALL", fk.limiter),
            ("ZRANGE", fk.held, 0, -1), ("TIME",)])
        config, state = _mapping(config), _mapping(state)
        held_tasks = [_text(t) for t in held]
        lengths = await self._many(fk.queue.base, [
            ("LLEN", fk.held_list(t)) for t in held_tasks]) if held_tasks else []
        held_count = dict(zip(held_tasks, (int(n) for n in lengths), strict=True))
        now_us = int(now[0]) * 1_000_000 + int(now[1])
        fields = {f.removeprefix(OVERRIDE) for f in config}
        fields |= {f.removeprefix(PAUSE) for f in state}
        fields |= {scope_field(t) for t in held_tasks}
        rows = [self._row(f, config, state, held_count, now_us) for f in fields]
        return sorted(rows, key=lambda r: (r.task is not None, r.task or ""))

    @staticmethod
    def _row(field: str, config: dict[str, str], state: dict[str, str],
             held: dict[str, int], now_us: int) -> LimitInfo:
        declared = RateLimit.decode(config.get(field, ""))
        raw_override = config.get(OVERRIDE + field)
        override: RateLimit | str | None = raw_override
        if raw_override is not None and raw_override != OFF:
            override = RateLimit.decode(raw_override) or raw_override
        effective = declared
        if raw_override is not None:
            effective = override if isinstance(override, RateLimit) else None
        tokens, next_ms = _state(effective, _int(state.get(field)),
                                 _int(state.get(PAUSE + field)), now_us)
        task = _task_of(field)
        return LimitInfo(task, declared, override, effective, tokens, next_ms,
                         held.get(task, 0) if task is not None else sum(held.values()))


async def postpone(broker: Broker, job: ClaimedJob, signal: RateLimited) -> Settlement:
    """What a worker does when a task raises :class:`RateLimited`: pause the
    task's limiter on every worker, then hand the job back (no try spent).
    If the pause cannot be written the job is still handed back: its next
    claim holds it if the limiter has no token, else it runs again."""
    try:
        await FlowLimits(broker.lane, broker.prefix).pause(
            job.queue, job.task, signal.retry_after_ms)
    except Exception as exc:  # best effort: the hand-back below is what matters
        log.warning("job %s task=%s: could not pause its rate limiter: %s: %s",
                    job.id, job.task, type(exc).__name__, exc)
    log.info("job %s task=%s rate limited: waits %.3fs with its task's limiter",
             job.id, job.task, signal.retry_after)
    return Settlement(job.id, job.token, "requeue")


async def declare_app_limits(
    lane: Lane, prefix: str, tasks: Mapping[str, tuple[str, RateLimit | None]],
    queues: Mapping[str, RateLimit | None],
) -> None:
    """Store the limits an app's code declares, once when it opens: every
    registered task's (``tasks``: name -> (queue, limit or None)) and every
    queue's (``queues``: queue -> limit or None); None removes a declaration
    the code no longer makes. Operator overrides are left alone."""
    by_queue: dict[str, dict[str | None, RateLimit | None]] = {}
    for name, (queue, limit) in tasks.items():
        by_queue.setdefault(queue, {})[name] = limit
    for queue, limit in queues.items():
        by_queue.setdefault(queue, {})[None] = limit
    flow = FlowLimits(lane, prefix)
    for queue, declared in sorted(by_queue.items()):
        await flow.declare(queue, declared)


def _flow_command(broker: Broker, queue: str, job: tuple[str, str, str, int, int, int | None,
                  Mapping[str, str | int] | None], unique: UniqueKey | None,
                  group: str | None) -> tuple[Any, ...]:
    k = broker.keys(queue)
    job_id, task, args_json, priority, delay_ms, at_ms, extra = job
    extra_field = "\x1f".join(f"{n}\x1f{v}" for n, v in (extra or {}).items())
    keys = [k.job(job_id), k.wait(priority), k.prios, k.wake, k.delayed, k.schedules]
    if unique is not None:
        keys.append(FlowKeys(k).unique(unique.key))
    args: list[Any] = [job_id, task, args_json, priority, delay_ms,
                       "" if at_ms is None else at_ms, extra_field, "", "",
                       "" if unique is None else unique.mode,
                       "" if unique is None else unique.ttl_ms, group or ""]
    return ("EVALSHA", broker.scripts.scripts["enqueue"].sha, len(keys), *keys, *args)


def _refuse_sharded(broker: Broker, queue: str) -> None:
    if queue in broker.shards:
        raise ConfigurationError(
            f"queue {queue!r} is sharded: unique keys and concurrency keys are not supported "
            "there (the key and the job would not share a slot); use a fixed job_id for "
            "idempotency")


async def enqueue_flow(
    broker: Broker, queue: str, job_id: str, task: str, args_json: str, *,
    unique: UniqueKey | None = None, group: str | None = None, priority: int = 0,
    delay_ms: int = 0, at_ms: int | None = None, extra: Mapping[str, str | int] | None = None,
) -> tuple[EnqueueCode, str]:
    """``Broker.enqueue`` with a unique key and/or a concurrency group
    (``flow.group_id``): answers the code and the id of the job that now
    holds the key (the new job, or the one found there)."""
    _refuse_sharded(broker, queue)
    command = _flow_command(broker, queue, (job_id, task, args_json, priority, delay_ms,
                                            at_ms, extra), unique, group)
    (reply,) = await broker.run_pipelined(broker.keys(queue).base, "enqueue", [command],
                                          [job_id])
    if isinstance(reply, list):
        return enqueue_code(reply[0]), _text(reply[1])
    return enqueue_code(reply), job_id


class GroupedJob(Protocol):
    """What :func:`enqueue_grouped_many` needs of a prepared job."""

    @property
    def job_id(self) -> str: ...
    @property
    def group(self) -> str | None: ...

    def as_tuple(self) -> tuple[str, str, str, int, int, int | None, dict[str, str | int]]: ...


async def enqueue_grouped_many(broker: Broker, queue: str, jobs: Sequence[GroupedJob]
                               ) -> list[EnqueueCode]:
    """Enqueue jobs of a task with concurrency groups in one round trip, as
    one MULTI/EXEC (all or nothing at ``maxmemory``); idempotent by id."""
    _refuse_sharded(broker, queue)
    commands = [_flow_command(broker, queue, j.as_tuple(), None, j.group) for j in jobs]
    if not commands:
        return []
    replies = await broker.run_pipelined(broker.keys(queue).base, "enqueue", commands,
                                         [j.job_id for j in jobs], atomic=True)
    return [enqueue_code(r) for r in replies]
