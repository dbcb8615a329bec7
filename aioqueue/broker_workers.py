"""The worker registry: each supervisor's heartbeat, and who is alive.
Part of the broker layer.

Keys (one hash tag, so the heartbeat script touches one cluster slot):

=============================  ======  ========================================
``<prefix>:{workers}``         zset    worker ids, score = last beat (server ms)
``<prefix>:{workers}:<id>``    hash    the worker's last heartbeat (fields below)
=============================  ======  ========================================

A worker is *alive* while its last beat is younger than ``LOST_AFTER_BEATS``
of its own intervals, *lost* after that, and forgotten once silent for the
retention time (its hash expires, the next beat of anyone prunes the index).
A worker that stops cleanly removes itself.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass

from .broker_admin import BrokerAdmin, Lane, as_mapping, run_script
from .connection import translate_errors
from .scripts import load_script

LOST_AFTER_BEATS = 3
"""A worker silent for this many of its heartbeat intervals is shown as lost."""

MOST_WORKERS = 10_000
"""Most workers the index keeps (the least recently seen are dropped)."""


class WorkerState(enum.StrEnum):
    ALIVE = "alive"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker's last heartbeat, as an operator sees it."""

    id: str
    state: WorkerState
    host: str
    pid: int
    version: str
    queues: list[str]
    concurrency: int
    started_ms: int
    seen_ms: int
    seen_age_s: float
    interval_s: float
    running: int
    running_ids: list[str]
    """The first ids of the jobs it runs (all of them up to 100). For a lost
    worker these jobs are recovering: their leases expire and the reaper
    hands them to live workers."""
    counters: dict[str, int]
    loop_lag_s: float
    """The longest event-loop stall seen during its last interval."""


def _num(raw: Mapping[str, str], name: str, default: float = 0) -> float:
    try:
        return float(raw.get(name, default))
    except ValueError:
        return default


def parse_worker(worker_id: str, raw: Mapping[str, str], now_ms: int) -> WorkerInfo:
    """A worker hash as stored by :meth:`WorkerRegistry.beat`; unreadable
    fields read as zero or empty (a registry entry must never break a listing)."""
    seen = int(_num(raw, "seen"))
    interval_s = _num(raw, "iv", 5000) / 1000
    age_s = max(0, now_ms - seen) / 1000
    try:
        counters = {str(k): int(v) for k, v in json.loads(raw.get("counters", "{}")).items()}
    except (ValueError, TypeError, AttributeError):
        counters = {}
    return WorkerInfo(
        id=worker_id,
        state=WorkerState.ALIVE if age_s <= LOST_AFTER_BEATS * interval_s else WorkerState.LOST,
        host=raw.get("host", ""), pid=int(_num(raw, "pid")), version=raw.get("version", ""),
        queues=[q for q in raw.get("queues", "").split(",") if q],
        concurrency=int(_num(raw, "concurrency")), started_ms=int(_num(raw, "started")),
        seen_ms=seen, seen_age_s=age_s, interval_s=interval_s,
        running=int(_num(raw, "running")),
        running_ids=[j for j in raw.get("running_ids", "").split(" ") if j],
        counters=counters, loop_lag_s=_num(raw, "lag_ms") / 1000,
    )


class WorkerRegistry:
    """Writes heartbeats and lists workers, for one key prefix."""

    def __init__(self, lane: Lane, prefix: str) -> None:
        self.lane = lane
        self.prefix = prefix
        self.index_key = f"{prefix}:{{workers}}"
        self._script = load_script("heartbeat")

    def record_key(self, worker_id: str) -> str:
        return f"{self.index_key}:{worker_id}"

    async def beat(self, worker_id: str, fields: Mapping[str, str | int | float],
                   *, retention_ms: int) -> int:
        """Store the worker's fields (and the server time as ``seen``); one
        round trip. Returns the server time (ms)."""
        flat = [str(x) for name, value in fields.items() for x in (name, value)]
        now = await run_script(self.lane, self._script,
                               [self.index_key, self.record_key(worker_id)],
                               [worker_id, "beat", retention_ms, MOST_WORKERS, *flat],
                               self.index_key)
        return int(now)

    async def register_queues(self, queues: list[str]) -> None:
        """Add the worker's queues to the queue registry."""
        await BrokerAdmin(self.lane, self.prefix).register_queues(queues)

    async def remove(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""
        await run_script(self.lane, self._script,
                         [self.index_key, self.record_key(worker_id)],
                         [worker_id, "stop", 1, MOST_WORKERS], self.index_key)

    async def workers(self, *, limit: int = 100, offset: int = 0) -> tuple[list[WorkerInfo], int]:
        """Workers, most recently seen first (a page of ``limit``), and how
        many the index holds."""
        with translate_errors(self.index_key):
            now, total, ids = await self.lane.execute_many([
                ("TIME",), ("ZCARD", self.index_key),
                ("ZREVRANGE", self.index_key, offset, offset + limit - 1)])
            for reply in (now, total, ids):
                if isinstance(reply, Exception):
                    raise reply
            records = await self.lane.execute_many(
                [("HGETALL", self.record_key(str(w))) for w in ids]) if ids else []
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        out = []
        for worker_id, raw in zip(ids, records, strict=True):
            fields = {} if isinstance(raw, Exception) else as_mapping(raw)
            if fields:  # an expired record: the index entry goes at the next beat
                out.append(parse_worker(str(worker_id), fields, now_ms))
        return out, int(total)
