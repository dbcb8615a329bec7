"""Sharded pub/sub on Redis Cluster (``SSUBSCRIBE``, Redis >= 7 / Valkey).

On a cluster the scripts publish job events with ``SPUBLISH`` (see
``lua/includes/notify.lua``): an event stays in the shard that owns the
queue's slot instead of crossing the cluster bus to every node. A listener
therefore holds one subscription connection per primary that owns one of its
channels, made when a channel on that primary is first wanted.

:class:`ShardedPubSub` offers the part of redis-py's ``PubSub`` that
:mod:`aioqueue.listener` and the cancel listener use (``subscribe``,
``unsubscribe``, ``get_message``, ``ping``) and hands back classic message
types (``subscribe``, ``message``, ``pong``), so the listener's code is the
same on every topology.

When a slot moves (resharding, failover), its old owner ends the
subscriptions of that slot with an unsolicited ``sunsubscribe``: the channel
is subscribed again on the new owner, and its confirmation reaches the
listener as a second ``subscribe`` for a confirmed channel, on which the
listener wakes that channel's waiters to read the job's state again (an
event published in between is not missed). Any other failure of a node's
connection (closed, unreachable, ``MOVED``) is raised from ``get_message``
after the slot map was reloaded: the listener opens a fresh
:class:`ShardedPubSub`, re-subscribes everything and wakes every waiter.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub
from redis.asyncio.connection import ConnectionPool

from .backoff import full_jitter
from .connection import Address

log = logging.getLogger("aioqueue.results")

Locate = Callable[[str], Awaitable[Address]]
Refresh = Callable[[], Awaitable[None]]
PoolFactory = Callable[[Address], ConnectionPool]

#: reloads of the slot map while waiting for a moved slot's new owner
REHOME_ATTEMPTS = 8


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class ShardedPubSub:
    """Sharded subscriptions over one connection per primary (see the module)."""

    def __init__(self, tg: TaskGroup, *, locate: Locate, refresh: Refresh,
                 pool: PoolFactory) -> None:
        self._tg = tg
        self._locate = locate
        self._refresh = refresh
        self._pool = pool
        self._nodes: dict[Address, PubSub] = {}
        self._where: dict[str, Address] = {}
        """every channel wanted, and the node it is subscribed on"""
        self._leaving: set[str] = set()
        self._pongs_due: set[Address] = set()
        self._lock = anyio.Lock()
        self._send, self._inbox = anyio.create_memory_object_stream[
            "dict[str, Any] | Exception"](math.inf)
        self._closed = False

    # -- the PubSub interface ---------------------------------------------------

    async def subscribe(self, *channels: str) -> None:
        async with self._lock:
            for channel in channels:
                self._leaving.discard(channel)
                address = await self._locate(channel)
                self._where[channel] = address
                await self._ssubscribe(address, channel)

    async def unsubscribe(self, *channels: str) -> None:
        async with self._lock:
            for channel in channels:
                address = self._where.pop(channel, None)
                pubsub = None if address is None else self._nodes.get(address)
                if pubsub is not None:
                    self._leaving.add(channel)
                    await pubsub.sunsubscribe(channel)

    async def get_message(self, *, ignore_subscribe_messages: bool = False,
                          timeout: float | None = 0.0) -> dict[str, Any] | None:
        """The next message, None after ``timeout`` seconds; raises what
        broke a node's connection."""
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            item = await self._inbox.receive()
            if isinstance(item, Exception):
                raise item
            if ignore_subscribe_messages and item["type"] == "subscribe":
                return None
            return item
        return None

    async def ping(self) -> None:
        """PING every node; one ``pong`` message once all have answered."""
        self._pongs_due = set(self._nodes)
        if not self._pongs_due:
            self._send.send_nowait({"type": "pong", "channel": None, "data": ""})
        for pubsub in list(self._nodes.values()):
            await pubsub.ping()

    async def aclose(self) -> None:
        self._closed = True
        for pubsub in list(self._nodes.values()):
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await pubsub.connection_pool.disconnect()
        self._nodes.clear()

    # -- per node ---------------------------------------------------------------

    async def _ssubscribe(self, address: Address, channel: str) -> None:
        if self._closed:
            raise redis_errors.ConnectionError("the sharded subscriptions are closed")
        pubsub = self._nodes.get(address)
        try:
            if pubsub is None:
                pubsub = self._nodes[address] = PubSub(self._pool(address))
                await pubsub.ssubscribe(channel)
                self._tg.start_soon(self._read, address, pubsub)
            else:
                await pubsub.ssubscribe(channel)
        except Exception as exc:
            # as if the connection had broken: the listener starts over
            # (re-subscribing everything) and wakes every waiter
            self._tg.start_soon(self._fail, address, exc)
            raise

    async def _read(self, address: Address, pubsub: PubSub) -> None:
        try:
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
                if msg is not None:
                    self._handle(address, pubsub, msg)
        except Exception as exc:
            await self._fail(address, exc)

    async def _fail(self, address: Address, exc: Exception) -> None:
        """A node failed, or refused a channel (MOVED): reload the slot map
        for the listener's next attempt, then end this object."""
        log.debug("sharded subscriptions on %s:%s failed: %r", *address, exc)
        with contextlib.suppress(Exception), anyio.move_on_after(5):
            await self._refresh()
        self._send.send_nowait(exc)

    def _handle(self, address: Address, pubsub: PubSub, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        channel = None if msg.get("channel") is None else _text(msg["channel"])
        if kind == "smessage":
            self._send.send_nowait({"type": "message", "channel": channel, "data": msg["data"]})
        elif kind == "ssubscribe":
            self._send.send_nowait({"type": "subscribe", "channel": channel, "data": None})
        elif kind == "pong":
            self._pongs_due.discard(address)
            if not self._pongs_due:
                self._send.send_nowait({"type": "pong", "channel": None, "data": msg["data"]})
        elif kind == "sunsubscribe" and channel is not None:
            if channel in self._leaving:
                self._leaving.discard(channel)
            elif self._where.get(channel) == address:
                # not asked for: this node no longer serves the channel's slot
                pubsub.shard_channels.pop(channel, None)
                self._tg.start_soon(self._rehome, channel, address)

    async def _rehome(self, channel: str, old: Address) -> None:
        """Subscribe ``channel`` again on the new owner of its slot."""
        try:
            address = old
            for attempt in range(1, REHOME_ATTEMPTS + 1):
                with contextlib.suppress(Exception):
                    await self._refresh()
                address = await self._locate(channel)
                if address != old:
                    break
                await anyio.sleep(full_jitter(attempt, base=0.05, cap=0.5))
            log.debug("channel %s moved from %s:%s to %s:%s", channel, *old, *address)
            async with self._lock:
                if self._where.get(channel) == old:
                    self._where[channel] = address
                    await self._ssubscribe(address, channel)
        except Exception as exc:
            self._send.send_nowait(exc)


@contextlib.asynccontextmanager
async def sharded_pubsub(*, locate: Locate, refresh: Refresh,
                         pool: PoolFactory) -> AsyncIterator[ShardedPubSub]:
    """A :class:`ShardedPubSub` whose node readers run until the block ends."""
    failed: Exception | None = None
    async with anyio.create_task_group() as tg:
        pubsub = ShardedPubSub(tg, locate=locate, refresh=refresh, pool=pool)
        try:
            yield pubsub
        except Exception as exc:
            # raised past the task group, not wrapped in an exception group
            failed = exc
        finally:
            tg.cancel_scope.cancel()
            with anyio.move_on_after(2, shield=True):
                await pubsub.aclose()
    if failed is not None:
        raise failed
