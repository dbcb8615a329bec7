"""Redis Cluster for the hot path: a command lane that routes by slot.

``redis+cluster://host:port[,host:port...]/0`` (``rediss+cluster://`` for
TLS) selects cluster mode. Ordinary commands then go through redis-py's
asyncio ``RedisCluster``; the hot path (scripts, record reads, the fetchers'
wait-and-claim) goes through :class:`ClusterLane`, which keeps the speed of
:class:`~aioqueue.lane.CommandLane` by holding one such lane per primary and
sending each command (or pipeline) to the primary that owns its first key's
slot. All keys of one queue share the hash tag ``{queue}``, so a script and
every key it touches live in one slot, and a pipeline of one queue's commands
goes to one node.

Redirections, as the cluster specification asks:

* ``MOVED``: the slot has a new owner (failover, resharding): note it, reload
  the whole slot map (once for all callers), send again;
* ``ASK``: the slot is being migrated and this key is already on the target:
  send ``ASKING`` and the command together on one connection of the target
  (redis-py's own client uses two pool checkouts for that, which can land on
  different sockets), once, without changing the map;
* ``TRYAGAIN`` / ``CLUSTERDOWN`` and a node that cannot be reached: reload
  the map and try again after the one backoff, a bounded number of times;
  then the error goes to the caller, whose error policy classifies it.

``SCRIPT LOAD`` goes to every primary: each node has its own script cache,
and a replica promoted by a failover starts with an empty one (a NOSCRIPT
from it makes the script runner load again, which reaches it then).
"""

from __future__ import annotations

import collections
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .backoff import full_jitter
from .connection import (
    Address,
    Connection,
    ServerInfo,
    parse_hosts,
    redact,
    translate_errors,
)
from .connection_cluster_pubsub import sharded_pubsub
from .connection_cluster_slots import SLOTS, SlotMap, command_key, key_slot
from .errors import ConfigurationError, RedisCommandError, RedisUnavailable, UnsupportedServer
from .lane import CommandLane

__all__ = ["SLOTS", "ClusterConnection", "ClusterLane", "ClusterURL", "SlotMap",
           "command_key", "connection_factory", "is_cluster_url", "key_slot"]

SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
#: most redirections (MOVED/ASK) or cluster retries for one command
MAX_REDIRECTS = 8

ConnectionFactory = Callable[[Address], Callable[[], AbstractConnection]]


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in SCHEMES


@dataclass(frozen=True, slots=True)
class ClusterURL:
    """``redis+cluster://[user:password@]host:port[,host:port...]/0[?options]``."""

    seeds: tuple[Address, ...]
    #: the same URL as plain ``redis://`` (or ``rediss://``) with the first seed
    node_url: str

    @classmethod
    def parse(cls, url: str) -> ClusterURL:
        scheme, sep, rest = url.partition("://")
        plain = SCHEMES.get(scheme.lower())
        if not sep or plain is None:
            raise ConfigurationError(f"not a cluster URL: {scheme}://...")
        creds, at, hostpart = rest.rpartition("@")
        hosts, slash, tail = hostpart.partition("/")
        seeds = parse_hosts(hosts, default_port=6379, what="cluster URL")
        db = tail.partition("?")[0]
        if db not in ("", "0"):
            raise ConfigurationError(
                f"cluster URL: Redis Cluster has only database 0 (got /{db})")
        first = f"{seeds[0][0]}:{seeds[0][1]}"
        node_url = f"{plain}://{creds}{at}{first}{slash}{tail}"
        return cls(seeds, node_url)


def connection_factory(node_url: str, **options: Any) -> ConnectionFactory:
    """Connections to any node with the URL's credentials and TLS settings
    plus ``options`` (the lane's socket settings)."""
    base: dict[str, Any] = dict(parse_url(node_url))
    base.pop("db", None)

    def for_address(address: Address) -> Callable[[], AbstractConnection]:
        pool = ConnectionPool(**{**base, **options, "host": address[0], "port": address[1]})
        return pool.make_connection

    return for_address


# MovedError is an AskError
_REDIRECTS = (redis_errors.AskError, redis_errors.TryAgainError, redis_errors.ClusterDownError)


class ClusterLane:
    """The :class:`~aioqueue.lane.CommandLane` interface over a cluster: one
    lane of up to ``size`` connections per primary, commands routed by slot."""

    #: scripts run through this lane publish with SPUBLISH (sharded pub/sub)
    sharded_pubsub = True

    def __init__(self, slot_map: SlotMap, connect: ConnectionFactory, *, size: int,
                 timeout_s: float | None, retries: int) -> None:
        self.slot_map = slot_map
        self._connect = connect
        self._lanes: dict[Address, CommandLane] = {}
        self.size = size
        self.timeout_s = timeout_s
        self.retries = retries
        self._closed = False
        #: redirections met, by error class (MovedError, AskError, TryAgainError, ...)
        self.redirects: collections.Counter[str] = collections.Counter()

    @property
    def closed(self) -> bool:
        return self._closed

    def node(self, address: Address) -> CommandLane:
        lane = self._lanes.get(address)
        if lane is None:
            lane = self._lanes[address] = CommandLane(
                self._connect(address), size=self.size, timeout_s=self.timeout_s,
                retries=self.retries)
        return lane

    async def execute(self, *args: Any, timeout_s: float | None = -1.0) -> Any:
        """Send one command to the primary owning its key; errors raised."""
        if str(args[0]).upper() == "SCRIPT":
            return await self._everywhere(args, timeout_s)
        reply = (await self._route([args], timeout_s))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def locate(self, key: str) -> Address:
        """The primary that owns ``key``'s slot (by the map as it stands)."""
        return await self._target(key_slot(key))

    async def refresh(self) -> None:
        """Reload the slot map (e.g. a subscription saw its slot move)."""
        await self._reload()

    async def execute_many(self, commands: Sequence[Sequence[Any]],
                           timeout_s: float | None = -1.0) -> list[Any]:
        """Pipeline commands on one connection of the primary owning the first
        key among them (callers keep a pipeline within one queue's slot)."""
        return await self._route(commands, timeout_s)

    async def _everywhere(self, args: Sequence[Any], timeout_s: float | None) -> Any:
        if not self.slot_map.primaries:
            await self._reload()
        replies = [await self.node(address).execute(*args, timeout_s=timeout_s)
                   for address in list(self.slot_map.primaries)]
        return replies[0]

    async def _reload(self) -> None:
        await self.slot_map.reload(self._ask_slots, self.slot_map.version)

    async def _target(self, slot: int | None) -> Address:
        if slot is None:
            if not self.slot_map.primaries:
                await self._reload()
            return random.choice(self.slot_map.primaries)
        owner = self.slot_map.owner(slot)
        if owner is None:
            await self._reload()
            owner = self.slot_map.owner(slot)
            if owner is None:
                raise redis_errors.ClusterDownError(f"CLUSTERDOWN slot {slot} is not served")
        return owner

    async def _route(self, commands: Sequence[Sequence[Any]],
                     timeout_s: float | None) -> list[Any]:
        key = next((k for k in map(command_key, commands) if k is not None), None)
        slot = None if key is None else key_slot(key)
        asking: Address | None = None
        failures = 0
        for _ in range(MAX_REDIRECTS):
            if self._closed:
                raise redis_errors.ConnectionError("the cluster lane is closed")
            address = asking or await self._target(slot)
            seen = self.slot_map.version
            try:
                replies = await self._send(address, commands, timeout_s, asking is not None)
            except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
                # the node may have failed over: ask the cluster who owns the slot now
                failures += 1
                if failures > self.retries or not await self._owner_changed(slot, address):
                    raise
                asking = None
                continue
            redirect = next((r for r in replies if isinstance(r, _REDIRECTS)), None)
            if redirect is None:
                return replies
            asking = None
            self.redirects[type(redirect).__name__] += 1
            if isinstance(redirect, redis_errors.MovedError):
                self.slot_map.moved(redirect.slot_id, (redirect.host, int(redirect.port)))
                await self.slot_map.reload(self._ask_slots, seen)
            elif isinstance(redirect, redis_errors.AskError):
                asking = (redirect.host, int(redirect.port))
            else:  # TRYAGAIN (a migration is moving these keys) or CLUSTERDOWN
                failures += 1
                if failures > self.retries:
                    return replies
                await anyio.sleep(full_jitter(failures, base=0.05, cap=0.5))
                # a reload here is a hint; its failure is not the caller's error
                with contextlib.suppress(redis_errors.RedisError, OSError, TimeoutError):
                    await self.slot_map.reload(self._ask_slots, seen)
        return replies

    async def _ask_slots(self, address: Address) -> Any:
        return await self.node(address).execute("CLUSTER", "SLOTS")

    async def _owner_changed(self, slot: int | None, address: Address) -> bool:
        await anyio.sleep(full_jitter(1, base=0.05, cap=0.5))
        try:
            await self.slot_map.reload(self._ask_slots, self.slot_map.version)
        except (redis_errors.RedisError, OSError, TimeoutError):
            return False
        return slot is None or self.slot_map.owner(slot) != address

    async def _send(self, address: Address, commands: Sequence[Sequence[Any]],
                    timeout_s: float | None, asking: bool) -> list[Any]:
        lane = self.node(address)
        if not asking:
            if len(commands) == 1:
                try:
                    return [await lane.execute(*commands[0], timeout_s=timeout_s)]
                except redis_errors.ResponseError as exc:
                    return [exc]
            return await lane.execute_many(commands, timeout_s=timeout_s)
        # ASKING is good for the next command only: one before each
        interleaved = [part for command in commands for part in (("ASKING",), command)]
        replies = await lane.execute_many(interleaved, timeout_s=timeout_s)
        return replies[1::2]

    async def close(self) -> None:
        self._closed = True
        for lane in list(self._lanes.values()):
            await lane.close()
        self._lanes.clear()


class ClusterConnection(Connection):
    """:class:`~aioqueue.connection.Connection` for ``redis+cluster://``:
    redis-py's ``RedisCluster`` for ordinary commands, :class:`ClusterLane`
    for the hot path and the fetchers' blocking waits, and sharded pub/sub
    (:mod:`aioqueue.connection_cluster_pubsub`) for job events."""

    sharded_pubsub = True

    def __init__(self, url: str, *, socket_timeout_s: float = 5.0,
                 connect_timeout_s: float = 5.0, max_connections: int = 50,
                 retries: int = 3, redis_options: Mapping[str, Any] | None = None) -> None:
        parsed = ClusterURL.parse(url)
        self.url = url
        self.socket_timeout_s = socket_timeout_s
        options = dict(redis_options or {})
        self.client = RedisCluster.from_url(  # type: ignore[assignment]
            parsed.node_url, startup_nodes=[ClusterNode(h, p) for h, p in parsed.seeds],
            decode_responses=True, socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s, max_connections=max_connections,
            **options)
        self._node_url = parsed.node_url
        self._lane_options = dict(
            decode_responses=True, socket_timeout=None,
            socket_connect_timeout=connect_timeout_s, socket_keepalive=True, **options)
        self.slot_map = SlotMap(parsed.seeds)
        # the lane interface (execute, execute_many, close), routed by slot
        self.lane = ClusterLane(  # type: ignore[assignment]
            self.slot_map, connection_factory(parsed.node_url, **self._lane_options),
            size=max_connections, timeout_s=socket_timeout_s, retries=retries)
        self.server = None

    @contextlib.asynccontextmanager
    async def open_pubsub(self) -> AsyncIterator[Any]:
        """Sharded subscriptions: one connection per primary owning a channel."""
        lane: ClusterLane = self.lane  # type: ignore[assignment]
        async with sharded_pubsub(locate=lane.locate, refresh=lane.refresh,
                                  pool=self._pubsub_pool) as pubsub:
            yield pubsub

    def _pubsub_pool(self, address: Address) -> ConnectionPool:
        base: dict[str, Any] = dict(parse_url(self._node_url))
        base.pop("db", None)
        # no retry in place: a failed node's subscriptions are made again
        # wherever the slot map then says
        return ConnectionPool(**{
            **base, **self._lane_options, "host": address[0], "port": address[1],
            "socket_timeout": self.socket_timeout_s, "retry": Retry(NoBackoff(), 0)})

    @contextlib.asynccontextmanager
    async def blocking_lane(self, name: str) -> AsyncIterator[CommandLane]:
        """One dedicated connection per primary, made when a fetcher's queue
        (its slot) first needs it; no retry behind the caller's back."""
        options = {**self._lane_options, "client_name": name, "decode_responses": False}
        lane = ClusterLane(self.slot_map, connection_factory(self._node_url, **options),
                           size=1, timeout_s=self.socket_timeout_s, retries=0)
        try:
            yield lane  # type: ignore[misc]
        finally:
            with anyio.CancelScope(shield=True):
                await lane.close()

    async def close(self) -> None:
        await self.lane.close()
        await self.client.aclose()

    async def check_server(self) -> ServerInfo:
        """The checks of a single server on one primary, and that the URL
        does lead to a cluster that serves every slot."""
        try:
            with translate_errors():
                await self.lane.execute("CLUSTER", "SLOTS")
        except RedisCommandError as exc:
            raise ConfigurationError(
                f"{redact(self.url)} is not a Redis Cluster node ({exc.__cause__ or exc}); "
                "use a redis:// URL for a single server") from exc
        except RedisUnavailable:
            pass  # the server check below says so, with its hints
        server = await super().check_server()
        if server.version_tuple < (7, 0, 0):
            raise UnsupportedServer(
                f"{server.name} {server.version}: Redis Cluster mode needs Redis >= 7.0 or "
                "Valkey (job events use sharded pub/sub, SPUBLISH/SSUBSCRIBE)")
        with translate_errors():
            # redis-py's slot cache: its pub/sub picks a node from it unasked
            await self.client.initialize()
        return server
