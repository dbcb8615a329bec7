"""The shard counts of sharded queues, kept in Redis (part of the broker layer).

``<prefix>:shards`` is a hash: queue name -> shard count (2 or more; an
unsharded queue has no entry). Every process of one app reads it when it
opens, so producers, workers, the CLI and the dashboard agree on a queue's
layout even when only some of them declare it in code.

A count declared in code (``App(queue_shards=...)``) that differs from the
stored one is accepted only when the queue is empty in its stored layout
(nothing waiting, scheduled, running or dead-lettered): changing the count
moves most ids to another shard, so jobs left in the old layout would be
stranded. Otherwise the app refuses to open (``ConfigurationError``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .broker import Broker
from .connection import translate_errors
from .errors import ConfigurationError
from .keys import MAX_SHARDS, check_name, shard_name

log = logging.getLogger("aioqueue")


def shards_key(prefix: str) -> str:
    return f"{prefix}:shards"


def check_shard_counts(declared: Mapping[str, int] | None) -> dict[str, int]:
    """Validate ``App(queue_shards=)``: queue names, counts 1..MAX_SHARDS."""
    counts: dict[str, int] = {}
    for queue, count in (declared or {}).items():
        check_name("queue", queue)
        if isinstance(count, bool) or not isinstance(count, int) \
                or not 1 <= count <= MAX_SHARDS:
            raise ConfigurationError(
                f"queue_shards[{queue!r}] must be an int 1..{MAX_SHARDS}, got {count!r}")
        counts[queue] = count
    return counts


def _parse(raw: Any) -> dict[str, int]:
    pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    stored: dict[str, int] = {}
    for queue, count in pairs:
        try:
            stored[str(queue)] = int(count)
        except ValueError:
            continue  # not ours: ignored rather than fatal
    return stored


async def stored_shard_counts(broker: Broker) -> dict[str, int]:
    """The stored counts (queues with 2 or more shards)."""
    key = shards_key(broker.prefix)
    with translate_errors(key):
        # through the client the server check used: an app opening while the
        # server is at maxclients gets by on that one connection (the roles'
        # lanes then back off), instead of failing to open
        raw = await broker.connection.client.execute_command(  # type: ignore[no-untyped-call]
            "HGETALL", key)
    return {q: n for q, n in _parse(raw).items() if n > 1}


async def _layout_is_empty(broker: Broker, queue: str, shards: int) -> bool:
    names = [queue] if shards <= 1 else [shard_name(queue, i) for i in range(shards)]
    for name in names:
        counts = await broker.counts(name)
        if any(counts.values()):
            return False
    return True


async def open_shard_counts(broker: Broker, declared: Mapping[str, int]) -> dict[str, int]:
    """Check the counts declared in code against the stored ones, store the
    new ones, and set ``broker.shards`` to every sharded queue's count.

    :raises ConfigurationError: a declared count differs from the stored one
        while the queue still holds jobs in its stored layout.
    """
    stored = await stored_shard_counts(broker)
    key = shards_key(broker.prefix)
    for queue, count in sorted(declared.items()):
        current = stored.get(queue, 1)
        if count == current:
            continue
        if not await _layout_is_empty(broker, queue, current):
            raise ConfigurationError(
                f"queue {queue!r} has {current} shard(s) in Redis but this app declares "
                f"{count}: the count can change only while the queue is empty (nothing "
                "waiting, scheduled, running or dead-lettered). Drain it with the old "
                "count first (README, 'Sharded queues')")
        with translate_errors(key):
            if count > 1:
                await broker.connection.client.execute_command(  # type: ignore[no-untyped-call]
                    "HSET", key, queue, count)
            else:
                await broker.connection.client.execute_command(  # type: ignore[no-untyped-call]
                    "HDEL", key, queue)
        log.info("queue %s: shard count %d -> %d (the queue was empty)", queue, current, count)
        if count > 1:
            stored[queue] = count
        else:
            stored.pop(queue, None)
    broker.shards = stored
    return stored
