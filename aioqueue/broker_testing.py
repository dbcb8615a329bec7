"""The Redis side of ``aioqueue.testing``: what test helpers read and move.

Broker layer (it may import redis): the helpers in ``aioqueue.testing`` use
only these functions and the app's public API. They are meant for a
throw-away test server; ``flush_server`` empties the whole server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from .broker import Broker
from .connection import translate_errors

_MOVE_CHUNK = 500


def flush_server(url: str) -> None:
    """Delete every key on the server at ``url`` (a test server only)."""
    with translate_errors(), redis.Redis.from_url(url) as client:
        client.flushall()


async def scheduled_jobs(broker: Broker, queue: str) -> list[tuple[str, int]]:
    """Every scheduled (delayed, or waiting for a retry) job of a queue (of
    every shard of a sharded queue) with its due time in epoch ms, soonest first."""
    found: list[tuple[str, int]] = []
    for shard in broker.shard_queues(queue):
        keys = broker.keys(shard)
        with translate_errors(keys.base):
            pairs: Any = await broker.client.zrange(keys.delayed, 0, -1, withscores=True)
        found += [(str(job_id), int(score)) for job_id, score in pairs]
    return sorted(found, key=lambda pair: (pair[1], pair[0]))  # ZRANGE's order


async def set_due_times(broker: Broker, queue: str, due_ms: Mapping[str, int]) -> int:
    """Give scheduled jobs new due times (epoch ms, server clock), then wake
    idle workers so that they claim (and so promote due jobs) at once.

    ``ZADD XX`` only updates jobs still scheduled: one that a worker promoted
    meanwhile is not put back. Returns how many jobs were moved.
    """
    by_shard: dict[str, dict[str, int]] = {}
    for job_id, due in due_ms.items():
        by_shard.setdefault(broker.route(queue, job_id), {})[job_id] = due
    moved = 0
    for shard, dues in by_shard.items():
        moved += await _set_due_times(broker, shard, dues)
    return moved


async def _set_due_times(broker: Broker, queue: str, due_ms: Mapping[str, int]) -> int:
    keys = broker.keys(queue)
    moves = list(due_ms.items())
    moved = 0
    with translate_errors(keys.base):
        for start in range(0, len(moves), _MOVE_CHUNK):
            chunk = dict(moves[start:start + _MOVE_CHUNK])
            changed: Any = await broker.client.zadd(keys.delayed, chunk, xx=True, ch=True)
            moved += int(changed)
        if moved:
            # an idle worker blocks until the old due time: a wake-up token
            # makes it claim now; the list holds at most 8 tokens
            async with broker.client.pipeline(transaction=False) as pipe:
                pipe.rpush(keys.wake, "1")
                pipe.ltrim(keys.wake, -8, -1)
                await pipe.execute()
    return moved


async def job_ids(broker: Broker, queue: str) -> list[str]:
    """The ids of every job record of a queue, of all its shards (a SCAN:
    test servers only)."""
    found: list[str] = []
    for shard in broker.shard_queues(queue):
        keys = broker.keys(shard)
        prefix = keys.job("")
        with translate_errors(keys.base):
            async for key in broker.client.scan_iter(match=_glob_escape(prefix) + "*",
                                                     count=500):
                found.append(str(key)[len(prefix):])
    return found


def _glob_escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)
