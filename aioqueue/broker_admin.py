"""Operator queries: the queue registry, queue summaries, job pages, pause
and purge. Part of the broker layer (it talks to Redis); the CLI and the
dashboard only see the typed results.

Every read is bounded: a summary costs three pipelined round trips whatever
the number of queues and jobs, a page of jobs costs O(page size) commands,
and nothing here uses ``KEYS``, ``SCAN`` or an unbounded range.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from .connection import translate_errors
from .errors import ConfigurationError
from .keys import QueueKeys, check_name
from .record import Field
from .scripts import LuaScript, load_script

REGISTRY_LIMIT = 1000
"""Most queues the registry remembers (the most recently seen are kept)."""

PAGE_LIMIT = 500
"""Largest page a listing returns."""

# record fields read for a row of a job listing
_ROW_FIELDS = (Field.TASK, Field.STATUS, Field.PRIORITY, Field.ATTEMPT, Field.ENQUEUED,
               Field.STARTED, Field.WORKER)


class Lane(Protocol):
    """The broker layer's command path (``CommandLane`` or a cluster lane)."""

    async def execute(self, *args: Any, timeout_s: float | None = -1.0) -> Any: ...

    async def execute_many(self, commands: Sequence[Sequence[Any]],
                           timeout_s: float | None = -1.0) -> list[Any]: ...


class JobState(enum.StrEnum):
    """The listings of a queue."""

    WAITING = "waiting"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """One queue at a glance."""

    name: str
    waiting_by_priority: dict[int, int]
    scheduled: int
    running: int
    dead: int
    paused: bool
    oldest_waiting_age_s: float | None
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def waiting(self) -> int:
        return sum(self.waiting_by_priority.values())


@dataclass(frozen=True, slots=True)
class JobRow:
    """One line of a job listing (the small fields of the record)."""

    id: str
    task: str
    status: str
    priority: int
    attempt: int
    enqueued_ms: int | None
    started_ms: int | None
    worker: str | None
    score_ms: int | None
    """Due time (scheduled), lease deadline (running) or time dead (dead)."""


@dataclass(frozen=True, slots=True)
class JobPage:
    """A page of a listing; pass ``next_cursor`` back for the next one."""

    queue: str
    state: JobState
    total: int
    jobs: list[JobRow]
    next_cursor: str | None


async def run_script(lane: Lane, script: LuaScript, keys: Sequence[str],
                     args: Sequence[Any], where: str) -> Any:
    """EVALSHA, loading the script once if the server lost it."""
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    with translate_errors(where):
        try:
            return await lane.execute(*command)
        except NoScriptError:
            await lane.execute("SCRIPT", "LOAD", script.source)
            return await lane.execute(*command)


def _int(value: Any) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _pairs(raw: Any) -> list[tuple[str, float]]:
    """ZRANGE ... WITHSCORES in RESP2 (flat or pairs) or RESP3 form."""
    if raw and isinstance(raw[0], list | tuple):
        return [(str(m), float(s)) for m, s in raw]
    return [(str(raw[i]), float(raw[i + 1])) for i in range(0, len(raw), 2)]


def as_mapping(raw: Any) -> dict[str, str]:
    if isinstance(raw, list):
        return {str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw) - 1, 2)}
    return {str(k): str(v) for k, v in (raw or {}).items()}


def _parse_cursor(cursor: str | None) -> tuple[int, int]:
    """``"<priority>:<offset>"`` for waiting jobs, ``"<offset>"`` otherwise."""
    if not cursor:
        return 0, 0
    try:
        head, _, tail = cursor.partition(":")
        if tail:
            return int(head), int(tail)
        return 0, int(head)
    except ValueError:
        raise ConfigurationError(f"cursor {cursor!r} is not one this listing gave") from None


class BrokerAdmin:
    """Operator reads and actions on the queues of one key prefix, through
    the broker's command lane."""

    def __init__(self, lane: Lane, prefix: str) -> None:
        self.lane = lane
        self.prefix = prefix
        self.registry_key = f"{prefix}:queues"
        self._purge_script = load_script("purge_waiting")

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.prefix, check_name("queue", queue))

    def paused_key(self, queue: str) -> str:
        return self.keys(queue).base + "paused"

    async def _many(self, commands: Sequence[Sequence[Any]], where: str) -> list[Any]:
        """Pipeline ``commands``; an error reply raises our typed error."""
        if not commands:
            return []
        with translate_errors(where):
            replies = await self.lane.execute_many(commands)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    async def _one(self, where: str, *command: Any) -> Any:
        with translate_errors(where):
            return await self.lane.execute(*command)

    # -- the queue registry ----------------------------------------------------

    async def register_queues(self, queues: Iterable[str]) -> None:
        """Remember queues (score: server time in s); the registry keeps the
        ``REGISTRY_LIMIT`` most recently seen."""
        names = sorted({check_name("queue", q) for q in queues})
        if not names:
            return
        sec, _ = await self._one(self.registry_key, "TIME")
        flat = [x for q in names for x in (int(sec), q)]
        _, size = await self._many([("ZADD", self.registry_key, *flat),
                                    ("ZCARD", self.registry_key)], self.registry_key)
        if int(size) > REGISTRY_LIMIT:
            # ZRANGE + ZREM rather than ZREMRANGEBYRANK: the README's ACL
            # lines already allow both
            stale = await self._one(self.registry_key, "ZRANGE", self.registry_key, 0,
                                    int(size) - REGISTRY_LIMIT - 1)
            if stale:
                await self._one(self.registry_key, "ZREM", self.registry_key, *stale)

    async def known_queues(self) -> list[str]:
        """Registered queues, by name."""
        names = await self._one(self.registry_key, "ZRANGE", self.registry_key, 0,
                                REGISTRY_LIMIT - 1)
        return sorted(str(n) for n in names)

    async def forget_queue(self, queue: str) -> None:
        await self._one(self.registry_key, "ZREM", self.registry_key, queue)

    # -- summaries -----------------------------------------------------------

    async def summaries(self, queues: Sequence[str]) -> list[QueueSummary]:
        """Counts, pause flag, oldest waiting age and counters of each queue,
        in three pipelined round trips."""
        keys = [self.keys(q) for q in queues]
        first = await self._many([("TIME",), *[c for k in keys for c in (
            ("ZRANGE", k.prios, 0, -1), ("ZCARD", k.delayed), ("ZCARD", k.leases),
            ("ZCARD", k.dead), ("EXISTS", k.base + "paused"), ("HGETALL", k.stats))]],
            self.prefix)
        now_ms = int(first[0][0]) * 1000 + int(first[0][1]) // 1000
        levels = [[int(m) for m in first[1 + 6 * i]] for i in range(len(keys))]
        second = await self._many([c for k, lv in zip(keys, levels, strict=True)
                                   for level in lv for c in (("LLEN", k.wait(level)),
                                                             ("LINDEX", k.wait(level), 0))],
                                  self.prefix)
        heads: list[tuple[int, str]] = []
        pos = 0
        for i, lv in enumerate(levels):
            for _ in lv:
                if second[pos + 1] is not None:
                    heads.append((i, str(second[pos + 1])))
                pos += 2
        third = await self._many([("HGET", keys[i].job(head), Field.ENQUEUED)
                                  for i, head in heads], self.prefix)
        oldest: dict[int, int] = {}
        for (i, _), enqueued in zip(heads, third, strict=True):
            if _int(enqueued) is not None:
                oldest[i] = min(oldest.get(i, now_ms), int(enqueued))
        out = []
        pos = 0
        for i, (queue, lv) in enumerate(zip(queues, levels, strict=True)):
            by_priority = {}
            for level in lv:
                by_priority[level] = int(second[pos])
                pos += 2
            base = 1 + 6 * i
            out.append(QueueSummary(
                name=queue, waiting_by_priority=by_priority,
                scheduled=int(first[base + 1]), running=int(first[base + 2]),
                dead=int(first[base + 3]), paused=bool(first[base + 4]),
                oldest_waiting_age_s=(max(0, now_ms - oldest[i]) / 1000
                                      if i in oldest else None),
                counters={k: int(v) for k, v in as_mapping(first[base + 5]).items()},
            ))
        return out

    # -- listings ----------------------------------------------------------------

    async def jobs(self, queue: str, state: JobState | str, *, limit: int = 50,
                   cursor: str | None = None) -> JobPage:
        """One page of a queue's jobs in ``state``: waiting (highest priority
        first, then FIFO), scheduled (soonest due first), running (earliest
        lease deadline first) or dead (most recent first)."""
        state = JobState(state)
        if not 1 <= limit <= PAGE_LIMIT:
            raise ConfigurationError(f"limit must be 1..{PAGE_LIMIT}, got {limit}")
        k = self.keys(queue)
        if state is JobState.WAITING:
            ids, scores, total, nxt = await self._waiting_ids(k, cursor, limit)
        else:
            _, offset = _parse_cursor(cursor)
            ids, scores, total, nxt = await self._zset_ids(k, state, offset, limit)
        rows = await self._rows(k, ids, scores)
        return JobPage(queue, state, total, rows, nxt)

    async def _waiting_ids(self, k: QueueKeys, cursor: str | None, limit: int
                           ) -> tuple[list[str], list[int | None], int, str | None]:
        levels = [int(m) for m in await self._one(k.base, "ZRANGE", k.prios, 0, -1)]
        lengths = [int(n) for n in await self._many([("LLEN", k.wait(lv)) for lv in levels],
                                                    k.base)]
        first, offset = 0, 0
        if cursor:
            level, offset = _parse_cursor(cursor)
            # levels run from the highest priority down; a level emptied
            # since the cursor was made resumes at the next lower one
            first = next((i for i, lv in enumerate(levels) if lv <= level), len(levels))
            if first < len(levels) and levels[first] != level:
                offset = 0
        ids: list[str] = []
        nxt: str | None = None
        for i in range(first, len(levels)):
            start = offset if i == first else 0
            room = limit - len(ids)
            if start < lengths[i]:
                got = await self._one(k.base, "LRANGE", k.wait(levels[i]), start,
                                      start + room - 1)
                ids.extend(str(x) for x in got)
            if len(ids) >= limit:
                if start + room < lengths[i]:
                    nxt = f"{levels[i]}:{start + room}"
                elif i + 1 < len(levels):
                    nxt = f"{levels[i + 1]}:0"
                break
        return ids, [None] * len(ids), sum(lengths), nxt

    async def _zset_ids(self, k: QueueKeys, state: JobState, offset: int, limit: int
                        ) -> tuple[list[str], list[int | None], int, str | None]:
        key = {JobState.SCHEDULED: k.delayed, JobState.RUNNING: k.leases,
               JobState.DEAD: k.dead}[state]
        page = ("ZREVRANGE" if state is JobState.DEAD else "ZRANGE", key, offset,
                offset + limit - 1, "WITHSCORES")
        total, raw = await self._many([("ZCARD", key), page], k.base)
        pairs = _pairs(raw)
        nxt = str(offset + limit) if offset + limit < int(total) else None
        return [m for m, _ in pairs], [int(s) for _, s in pairs], int(total), nxt

    async def _rows(self, k: QueueKeys, ids: list[str], scores: list[int | None]
                    ) -> list[JobRow]:
        records = await self._many([("HMGET", k.job(job_id), *_ROW_FIELDS) for job_id in ids],
                                   k.base)
        rows = []
        for job_id, score, rec in zip(ids, scores, records, strict=True):
            task, status, prio, att, et, ts, worker = rec
            rows.append(JobRow(
                id=job_id, task=task or "", status=status or "unknown",
                priority=_int(prio) or 0, attempt=_int(att) or 1, enqueued_ms=_int(et),
                started_ms=_int(ts), worker=worker, score_ms=score))
        return rows

    async def find_queues(self, job_id: str, candidates: Sequence[str]) -> list[str]:
        """The queues (among ``candidates``) that hold a record of ``job_id``;
        one pipelined EXISTS per candidate, no scan."""
        found = await self._many([("EXISTS", self.keys(q).job(job_id)) for q in candidates],
                                 self.prefix)
        return [q for q, hit in zip(candidates, found, strict=True) if hit]

    async def stored_result(self, queue: str, job_id: str) -> Any:
        """A finished job's stored result (parsed JSON; the raw text when it
        is not JSON; None when there is none)."""
        k = self.keys(queue)
        raw = await self._one(k.base, "HGET", k.job(job_id), Field.RESULT)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return str(raw)

    # -- actions ---------------------------------------------------------------

    async def pause(self, queue: str) -> None:
        """Stop new claims on the queue (running jobs finish). Stored in
        Redis, so it outlives worker restarts."""
        await self._one(self.keys(queue).base, "SET", self.paused_key(queue), "1")

    async def resume(self, queue: str) -> None:
        """Allow claims again and wake an idle worker."""
        k = self.keys(queue)
        await self._many([("DEL", self.paused_key(queue)), ("RPUSH", k.wake, "1")], k.base)

    async def is_paused(self, queue: str) -> bool:
        return bool(await self._one(self.keys(queue).base, "EXISTS", self.paused_key(queue)))

    async def purge(self, queue: str, state: JobState | str, *, result_ttl_ms: int,
                    reason: str = "purged by an operator", batch: int = 1000) -> int:
        """Cancel every waiting (or scheduled) job of the queue, ``batch`` per
        server-side call; returns how many were purged."""
        state = JobState(state)
        if state not in (JobState.WAITING, JobState.SCHEDULED):
            raise ConfigurationError("purge takes waiting or scheduled jobs; "
                                     "dead letters: 'aioqueue dead purge'")
        k = self.keys(queue)
        keys = [k.prios, k.delayed, k.wake, k.stats]
        total = 0
        while True:
            removed, purged = await run_script(
                self.lane, self._purge_script, keys,
                [k.base, state.value, batch, result_ttl_ms, reason], k.base)
            total += int(purged)
            if int(removed) == 0:
                return total

