"""Job listings of the operator views (part of the broker layer): one page
of a queue's waiting, scheduled, running or dead jobs in O(page size)
commands. :class:`~aioqueue.broker_admin.BrokerAdmin` adds the rest."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .connection import translate_errors
from .connection_cluster import command_key, key_slot
from .errors import ConfigurationError
from .keys import QueueKeys, check_name, check_queue_or_shard, shard_names
from .record import Field

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


def _parse_shard_cursor(cursor: str | None, shards: int) -> tuple[int, str | None]:
    """``"<shard>/<cursor in that shard>"``, the cursor of a sharded listing."""
    if not cursor:
        return 0, None
    head, slash, tail = cursor.partition("/")
    if not slash or not head.isdigit() or int(head) >= shards:
        raise ConfigurationError(f"cursor {cursor!r} is not one this listing gave")
    return int(head), tail or None


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


async def execute_spread(lane: Lane, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """``lane.execute_many(commands)``, except on a cluster lane, which sends a
    pipeline to the primary owning its first key: there the commands are
    grouped by the primary owning each one's key (one pipeline per primary),
    and the replies put back in order. For the operator reads that span
    queues; the hot path keeps its pipelines within one slot."""
    slot_map = getattr(lane, "slot_map", None)
    if slot_map is None:
        return await lane.execute_many(commands)
    groups: dict[Any, list[int]] = {}
    for i, command in enumerate(commands):
        key = command_key(command)
        owner = None if key is None else slot_map.owner(key_slot(key))
        groups.setdefault(owner, []).append(i)
    if len(groups) <= 1:
        return await lane.execute_many(commands)
    replies: list[Any] = [None] * len(commands)
    for places in groups.values():
        for i, reply in zip(places, await lane.execute_many([commands[i] for i in places]),
                            strict=True):
            replies[i] = reply
    return replies


class AdminBase:
    """The lane, prefix and shard counts the operator queries share."""

    def __init__(self, lane: Lane, prefix: str,
                 shards: Mapping[str, int] | None = None) -> None:
        self.lane = lane
        self.prefix = prefix
        self.shards = dict(shards or {})

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.prefix, check_queue_or_shard(queue))

    def shard_names(self, queue: str) -> list[str]:
        return shard_names(self.shards, check_name("queue", queue))

    async def _many(self, commands: Sequence[Sequence[Any]], where: str) -> list[Any]:
        """Pipeline ``commands``; an error reply raises our typed error. On a
        cluster, commands of several queues (slots) go as one pipeline per
        primary (see :func:`execute_spread`)."""
        if not commands:
            return []
        with translate_errors(where):
            replies = await execute_spread(self.lane, commands)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    async def _one(self, where: str, *command: Any) -> Any:
        with translate_errors(where):
            return await self.lane.execute(*command)


class JobListing(AdminBase):
    """Pages of a queue's jobs."""

    async def jobs(self, queue: str, state: JobState | str, *, limit: int = 50,
                   cursor: str | None = None) -> JobPage:
        """One page of a queue's jobs in ``state``: waiting (highest priority
        first, then FIFO), scheduled (soonest due first), running (earliest
        lease deadline first) or dead (most recent first)."""
        state = JobState(state)
        if not 1 <= limit <= PAGE_LIMIT:
            raise ConfigurationError(f"limit must be 1..{PAGE_LIMIT}, got {limit}")
        if queue in self.shards:
            return await self._sharded_jobs(queue, state, limit, cursor)
        return await self._jobs(queue, state, limit, cursor)

    async def _sharded_jobs(self, queue: str, state: JobState, limit: int,
                            cursor: str | None) -> JobPage:
        """A sharded queue lists shard after shard, each in its own order
        (priority order holds within a shard); its cursor is
        ``<shard>/<that shard's cursor>``."""
        shards = self.shard_names(queue)
        first, inner = _parse_shard_cursor(cursor, len(shards))
        rows: list[JobRow] = []
        totals: list[int] = []
        nxt: str | None = None
        for i, shard in enumerate(shards):
            if i < first or nxt is not None:
                totals.append(await self._total(shard, state))
                continue
            page = await self._jobs(shard, state, limit - len(rows),
                                    inner if i == first else None)
            rows += page.jobs
            totals.append(page.total)
            if page.next_cursor is not None:
                nxt = f"{i}/{page.next_cursor}"
            elif len(rows) >= limit and i + 1 < len(shards):
                nxt = f"{i + 1}/"
        if nxt is not None and nxt.endswith("/") and not sum(totals[int(nxt[:-1]):]):
            nxt = None  # the shards after this page are empty
        return JobPage(queue, state, sum(totals), rows, nxt)

    async def _total(self, queue: str, state: JobState) -> int:
        k = self.keys(queue)
        if state is JobState.WAITING:
            levels = await self._one(k.base, "ZRANGE", k.prios, 0, -1)
            lengths = await self._many([("LLEN", k.wait(int(lv))) for lv in levels], k.base)
            return sum(int(n) for n in lengths)
        key = {JobState.SCHEDULED: k.delayed, JobState.RUNNING: k.leases,
               JobState.DEAD: k.dead}[state]
        return int(await self._one(k.base, "ZCARD", key))

    async def _jobs(self, queue: str, state: JobState, limit: int,
                    cursor: str | None) -> JobPage:
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
