"""The broker's reads and small commands: job records, queue counts,
dead-letter listing, schedule ticks, server time.

:class:`BrokerBase` holds what every broker module shares (the connection,
the key layout); :class:`aioqueue.broker.Broker` adds the Lua scripts.
Every method raises aioqueue errors only (see :mod:`aioqueue.connection`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.asyncio import Redis

from .connection import Connection, Subscription, translate_errors
from .keys import QueueKeys, route, shard_names
from .lane import CommandLane


def _pairs(raw: Any) -> dict[str, str]:
    """A hash or a WITHSCORES reply: RESP3 gives a map or pairs, RESP2 a flat list."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    if raw and isinstance(raw[0], list):
        return {str(k): str(v) for k, v in raw}
    return {str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw) - 1, 2)}


def _summed(parts: Sequence[dict[str, int]]) -> dict[str, int]:
    """Counts or counters of a sharded queue: the sum over its shards."""
    total: dict[str, int] = {}
    for part in parts:
        for name, value in part.items():
            total[name] = total.get(name, 0) + value
    return total


class BrokerBase:
    """The connection and the key layout of one app's queues."""

    def __init__(self, connection: Connection, *, prefix: str) -> None:
        self.connection = connection
        self.prefix = prefix
        self.lane: CommandLane = connection.lane
        self._keys: dict[str, QueueKeys] = {}
        # per queue: the claim's keys but the reservation (built once: a
        # claim is the most frequent call a worker makes)
        self._claim_keys: dict[str, tuple[QueueKeys, list[str], list[str]]] = {}
        self.shards: dict[str, int] = {}
        """Shard counts of the sharded queues (2 or more; an unsharded queue
        is absent), set when the app opens (``broker_shards.py``)."""

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def socket_timeout_s(self) -> float:
        return self.connection.socket_timeout_s

    @property
    def client(self) -> Redis:
        """redis-py's client on the shared pool: for broker-layer modules only."""
        return self.connection.client

    def keys(self, queue: str) -> QueueKeys:
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys(self.prefix, queue)
        return keys

    def route(self, queue: str, job_id: str) -> str:
        """The queue (for a sharded queue: the shard) that holds ``job_id``.
        A shard's own name, or an unsharded queue's, is returned as given."""
        return route(self.shards, queue, job_id)

    def shard_queues(self, queue: str) -> list[str]:
        """Every shard of ``queue`` (``[queue]`` when it is not sharded)."""
        return shard_names(self.shards, queue)

    @contextlib.asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        """Messages published on ``channels`` (e.g. a queue's cancel channel)."""
        async with self.connection.subscribe(*channels) as subscription:
            yield subscription


class BrokerReads(BrokerBase):
    """Reads and small commands (no scripts)."""

    async def server_time_ms(self) -> int:
        with translate_errors():
            sec, usec = await self.lane.execute("TIME")
        return int(sec) * 1000 + int(usec) // 1000

    async def ping(self) -> None:
        with translate_errors():
            await self.lane.execute("PING")

    # -- job records (workflow records: aioqueue.broker_workflow) -------------

    async def job_fields(self, queue: str, job_id: str, *fields: str) -> list[str | None]:
        k = self.keys(self.route(queue, job_id) if self.shards else queue)
        with translate_errors(k.base):
            values: Any = await self.lane.execute("HMGET", k.job(job_id), *fields)
        return list(values)

    async def job_record(self, queue: str, job_id: str) -> dict[str, str]:
        k = self.keys(self.route(queue, job_id))
        with translate_errors(k.base):
            record: Any = await self.lane.execute("HGETALL", k.job(job_id))
        return _pairs(record)

    # -- queues -----------------------------------------------------------------

    async def counts(self, queue: str) -> dict[str, int]:
        """How many jobs are waiting, running, scheduled and dead in a queue
        (a sharded queue: in all its shards together)."""
        if queue in self.shards:
            return _summed([await self.counts(s) for s in self.shard_queues(queue)])
        k = self.keys(queue)
        held_key = k.base + "held"  # tasks with jobs held back by a rate limit (broker_flow)
        with translate_errors(k.base):
            levels, held = await self.lane.execute_many(
                [("ZRANGE", k.prios, 0, -1), ("ZRANGE", held_key, 0, -1)])
            for reply in (levels, held):
                if isinstance(reply, Exception):
                    raise reply
            lists = [k.wait(int(level)) for level in levels]
            lists += [f"{held_key}:{t.decode() if isinstance(t, bytes) else t}" for t in held]
            replies = await self.lane.execute_many(
                [*(("LLEN", name) for name in lists),
                 ("ZCARD", k.leases), ("ZCARD", k.delayed), ("ZCARD", k.dead),
                 # jobs waiting in concurrency groups (broker_groups)
                 ("HGET", k.base + "gstate", "waiting")])
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        # held jobs are waiting jobs (status 'queued'), only in another list
        waiting = sum(int(x) for x in replies[: len(lists)])
        running, scheduled, dead = (int(x) for x in replies[len(lists):-1])
        waiting += max(0, int(replies[-1] or 0))
        return {"waiting": waiting, "running": running, "scheduled": scheduled, "dead": dead}

    async def stats(self, queue: str) -> dict[str, int]:
        if queue in self.shards:
            return _summed([await self.stats(s) for s in self.shard_queues(queue)])
        k = self.keys(queue)
        with translate_errors(k.base):
            raw: Any = await self.lane.execute("HGETALL", k.stats)
        return {name: int(v) for name, v in _pairs(raw).items()}

    async def dead_ids(self, queue: str, *, offset: int = 0, limit: int = 100) -> list[str]:
        """Dead-lettered ids, oldest first (a sharded queue: merged by time)."""
        if queue in self.shards:
            return await self._sharded_dead_ids(queue, offset, limit)
        k = self.keys(queue)
        with translate_errors(k.base):
            ids: Any = await self.lane.execute(
                "ZRANGE", k.dead, offset, offset + limit - 1 if limit > 0 else -1)
        return [str(i) for i in ids]

    async def _sharded_dead_ids(self, queue: str, offset: int, limit: int) -> list[str]:
        stop = offset + limit - 1 if limit > 0 else -1
        merged: list[tuple[float, str]] = []
        for shard in self.shard_queues(queue):
            k = self.keys(shard)
            with translate_errors(k.base):
                raw: Any = await self.lane.execute("ZRANGE", k.dead, 0, stop, "WITHSCORES")
            merged += [(float(score), name) for name, score in _pairs(raw).items()]
        merged.sort()
        end = offset + limit if limit > 0 else None
        return [name for _, name in merged[offset:end]]

    async def is_dead(self, queue: str, job_id: str) -> bool:
        """Is the job in the queue's dead letters?"""
        k = self.keys(self.route(queue, job_id))
        with translate_errors(k.base):
            score = await self.lane.execute("ZSCORE", k.dead, job_id)
        return score is not None

    # -- schedules --------------------------------------------------------------

    async def mark_tick(self, queue: str, schedule_name: str, tick_ms: int,
                        *, only_new: bool) -> None:
        """Record a tick as handled without a job (first start, or skipped)."""
        k = self.keys(self.route(queue, f"cron.{schedule_name}.0"))
        with translate_errors(k.base):
            await self.lane.execute("ZADD", k.schedules, "NX" if only_new else "GT", tick_ms,
                                    schedule_name)

    async def last_ticks(self, queue: str) -> dict[str, int]:
        """The last handled tick of each schedule of ``queue`` (of a sharded
        queue: each schedule's ticks live in one shard, see ``keys.shard_key``)."""
        ticks: dict[str, int] = {}
        for shard in self.shard_queues(queue):
            k = self.keys(shard)
            with translate_errors(k.base):
                raw: Any = await self.lane.execute("ZRANGE", k.schedules, 0, -1, "WITHSCORES")
            ticks.update((name, int(float(score))) for name, score in _pairs(raw).items())
        return ticks

    async def forget_schedules(self, queue: str, names: Sequence[str]) -> None:
        by_shard: dict[str, list[str]] = {}
        for name in names:
            by_shard.setdefault(self.route(queue, f"cron.{name}.0"), []).append(name)
        for shard, some in by_shard.items():
            k = self.keys(shard)
            with translate_errors(k.base):
                await self.lane.execute("ZREM", k.schedules, *some)
