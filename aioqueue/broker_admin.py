"""Operator queries: the queue registry, queue summaries, job pages, pause
and purge. Part of the broker layer (it talks to Redis); the CLI and the
dashboard only see the typed results.

Every read is bounded: a summary costs three pipelined round trips whatever
the number of queues and jobs, a page of jobs costs O(page size) commands,
and nothing here uses ``KEYS``, ``SCAN`` or an unbounded range.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError

from .broker_listing import (
    PAGE_LIMIT,
    JobListing,
    JobPage,
    JobRow,
    JobState,
    Lane,
    _int,
)
from .connection import translate_errors
from .errors import ConfigurationError
from .keys import QueueKeys, check_name, route
from .record import Field
from .scripts import LuaScript, load_script

__all__ = ["PAGE_LIMIT", "REGISTRY_LIMIT", "BrokerAdmin", "JobPage", "JobRow", "JobState",
           "Lane", "QueueSummary", "as_mapping", "run_script"]

REGISTRY_LIMIT = 1000
"""Most queues the registry remembers (the most recently seen are kept)."""

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
    shards: int = 1
    """How many shards the queue has (its counts are their sums)."""
    held: int = 0
    """Waiting jobs outside the priority lists: held back by a rate limit or
    waiting in a concurrency group (``aioqueue limits`` shows them by task)."""

    @property
    def waiting(self) -> int:
        """Every waiting job, as ``App.queue_info`` counts them."""
        return sum(self.waiting_by_priority.values()) + self.held


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


def as_mapping(raw: Any) -> dict[str, str]:
    if isinstance(raw, list):
        return {str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw) - 1, 2)}
    return {str(k): str(v) for k, v in (raw or {}).items()}


def _merged(queue: str, parts: Sequence[QueueSummary]) -> QueueSummary:
    """The summary of a sharded queue: its shards' summaries added up."""
    by_priority: dict[int, int] = {}
    counters: dict[str, int] = {}
    for part in parts:
        for level, n in part.waiting_by_priority.items():
            by_priority[level] = by_priority.get(level, 0) + n
        for name, n in part.counters.items():
            counters[name] = counters.get(name, 0) + n
    ages = [p.oldest_waiting_age_s for p in parts if p.oldest_waiting_age_s is not None]
    return QueueSummary(
        name=queue, waiting_by_priority=dict(sorted(by_priority.items(), reverse=True)),
        scheduled=sum(p.scheduled for p in parts), running=sum(p.running for p in parts),
        dead=sum(p.dead for p in parts), paused=any(p.paused for p in parts),
        oldest_waiting_age_s=max(ages) if ages else None, counters=counters,
        shards=len(parts), held=sum(p.held for p in parts))


_STRIDE = 8  # commands per queue in the summaries' first round trip


def _held_lists(k: QueueKeys, tasks: Sequence[Any]) -> list[str]:
    """The held lists (one per task held back by a rate limit) of a queue."""
    return [f"{k.base}held:{t.decode() if isinstance(t, bytes) else t}" for t in tasks]


class BrokerAdmin(JobListing):
    """Operator reads and actions on the queues of one key prefix, through
    the broker's command lane. ``shards``: the shard counts of sharded queues
    (``broker.shards``); every method takes queue names and works on all
    shards of a sharded queue."""

    def __init__(self, lane: Lane, prefix: str,
                 shards: Mapping[str, int] | None = None) -> None:
        super().__init__(lane, prefix, shards)
        self.registry_key = f"{prefix}:queues"
        # on a cluster its events go out with SPUBLISH, like the broker's scripts
        self._purge_script = load_script(
            "purge_waiting", sharded=bool(getattr(lane, "sharded_pubsub", False)))

    def paused_key(self, queue: str) -> str:
        return self.keys(queue).base + "paused"

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
        in three pipelined round trips (a sharded queue: summed over its
        shards, the oldest age is the oldest shard's)."""
        if not any(q in self.shards for q in queues):
            return await self._summaries(queues)
        groups = [self.shard_names(q) for q in queues]
        parts = await self._summaries([shard for group in groups for shard in group])
        out, pos = [], 0
        for queue, group in zip(queues, groups, strict=True):
            chunk = parts[pos:pos + len(group)]
            out.append(_merged(queue, chunk) if queue in self.shards else chunk[0])
            pos += len(group)
        return out

    async def _summaries(self, queues: Sequence[str]) -> list[QueueSummary]:
        keys = [self.keys(q) for q in queues]
        # held back by a rate limit (broker_flow) or waiting in a concurrency
        # group (broker_groups): waiting jobs outside the priority lists
        first = await self._many([("TIME",), *[c for k in keys for c in (
            ("ZRANGE", k.prios, 0, -1), ("ZCARD", k.delayed), ("ZCARD", k.leases),
            ("ZCARD", k.dead), ("EXISTS", k.base + "paused"), ("HGETALL", k.stats),
            ("ZRANGE", k.base + "held", 0, -1), ("HGET", k.base + "gstate", "waiting"))]],
            self.prefix)
        now_ms = int(first[0][0]) * 1000 + int(first[0][1]) // 1000
        levels = [[int(m) for m in first[1 + _STRIDE * i]] for i in range(len(keys))]
        held_lists = [_held_lists(k, first[_STRIDE * (i + 1) - 1]) for i, k in enumerate(keys)]
        held_llens: list[tuple[Any, ...]] = [("LLEN", n) for names in held_lists for n in names]
        second = await self._many([c for k, lv in zip(keys, levels, strict=True)
                                   for level in lv for c in (("LLEN", k.wait(level)),
                                                             ("LINDEX", k.wait(level), 0))]
                                  + held_llens, self.prefix)
        lengths = iter(second[len(second) - len(held_llens):])
        held = [max(0, int(first[_STRIDE * (i + 1)] or 0))  # grouped waiting jobs
                + sum(int(next(lengths)) for _ in names) for i, names in enumerate(held_lists)]
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
            base = 1 + _STRIDE * i
            out.append(QueueSummary(
                name=queue, waiting_by_priority=by_priority,
                scheduled=int(first[base + 1]), running=int(first[base + 2]),
                dead=int(first[base + 3]), paused=bool(first[base + 4]),
                oldest_waiting_age_s=(max(0, now_ms - oldest[i]) / 1000
                                      if i in oldest else None),
                counters={k: int(v) for k, v in as_mapping(first[base + 5]).items()},
                held=held[i],
            ))
        return out

    # -- listings ----------------------------------------------------------------

    async def find_queues(self, job_id: str, candidates: Sequence[str]) -> list[str]:
        """The queues (among ``candidates``) that hold a record of ``job_id``;
        one pipelined EXISTS per candidate, no scan."""
        found = await self._many(
            [("EXISTS", self.keys(route(self.shards, q, job_id)).job(job_id))
             for q in candidates], self.prefix)
        return [q for q, hit in zip(candidates, found, strict=True) if hit]

    async def stored_result(self, queue: str, job_id: str) -> Any:
        """A finished job's stored result (parsed JSON; the raw text when it
        is not JSON; None when there is none)."""
        k = self.keys(route(self.shards, queue, job_id))
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
        Redis, so it outlives worker restarts. A sharded queue: every shard."""
        for shard in self.shard_names(queue):
            await self._one(self.keys(shard).base, "SET", self.paused_key(shard), "1")

    async def resume(self, queue: str) -> None:
        """Allow claims again and wake an idle worker (of every shard)."""
        for shard in self.shard_names(queue):
            k = self.keys(shard)
            await self._many([("DEL", self.paused_key(shard)), ("RPUSH", k.wake, "1")],
                             k.base)

    async def is_paused(self, queue: str) -> bool:
        """Whether claims are paused (a sharded queue: in any of its shards)."""
        for shard in self.shard_names(queue):
            if await self._one(self.keys(shard).base, "EXISTS", self.paused_key(shard)):
                return True
        return False

    async def purge(self, queue: str, state: JobState | str, *, result_ttl_ms: int,
                    reason: str = "purged by an operator", batch: int = 1000) -> int:
        """Cancel every waiting (or scheduled) job of the queue, ``batch`` per
        server-side call; returns how many were purged."""
        state = JobState(state)
        if state not in (JobState.WAITING, JobState.SCHEDULED):
            raise ConfigurationError("purge takes waiting or scheduled jobs; "
                                     "dead letters: 'aioqueue dead purge'")
        return sum([await self._purge(shard, state, result_ttl_ms, reason, batch)
                    for shard in self.shard_names(queue)])

    async def _purge(self, queue: str, state: JobState, result_ttl_ms: int, reason: str,
                     batch: int) -> int:
        k = self.keys(queue)
        keys = [k.prios, k.delayed, k.wake, k.stats, k.guard]
        total = 0
        while True:
            removed, purged = await run_script(
                self.lane, self._purge_script, keys,
                [k.base, state.value, batch, result_ttl_ms, reason], k.base)
            total += int(purged)
            if int(removed) == 0:
                return total

