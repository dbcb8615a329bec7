"""Redis Sentinel: connections that always go to the current primary.

``redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/<db>]``
(``rediss+sentinel://`` for TLS to the data nodes; ``?sentinel_password=...``
when the Sentinels have a password of their own). The hosts are Sentinels;
``<service>`` is the name they monitor (``sentinel monitor <service> ...``).

redis-py's Sentinel pool resolves the primary in ``connect()``, but a lane
connection is connected by its first ``send_packed_command``, which skips that
override (it would connect to the default localhost:6379). The lane's
connection class therefore asks Sentinel for the primary before every
(re)connect. A connection that fails, or that finds its server demoted
(``READONLY``: redis-py disconnects and raises ``ConnectionError``), is dropped
by the lane, never retried in place (redis-py's in-command retries would stay
on the old address: redis/redis-py#3874); the next connection asks Sentinel
again and reaches the promoted replica.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from .connection import Address, Connection, parse_hosts
from .errors import ConfigurationError
from .lane import CommandLane

SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}



def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() in SCHEMES


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[Address, ...]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        scheme, sep, rest = url.partition("://")
        tls = SCHEMES.get(scheme.lower())
        if not sep or tls is None:
            raise ConfigurationError(f"not a Sentinel URL: {scheme}://...")
        creds, at, hostpart = rest.rpartition("@")
        hosts, _, path_query = hostpart.partition("/")
        path, _, query = path_query.partition("?")
        sentinels = parse_hosts(hosts, default_port=26379, what="Sentinel URL")
        parts = [p for p in path.split("/") if p]
        if not parts or len(parts) > 2:
            raise ConfigurationError(
                "Sentinel URL: name the monitored service, e.g. "
                "redis+sentinel://h1:26379,h2:26379/mymaster/0")
        try:
            db = int(parts[1]) if len(parts) == 2 else 0
        except ValueError:
            raise ConfigurationError(f"Sentinel URL: bad database number {parts[1]!r}") from None
        user, _, password = creds.partition(":") if at else ("", "", "")
        options = parse_qs(query)
        return cls(
            sentinels=sentinels, service=unquote(parts[0]), db=db,
            username=unquote(user) or None, password=unquote(password) or None,
            sentinel_password=next(iter(options.get("sentinel_password", [])), None), tls=tls)


class _LaneConnection(SentinelManagedConnection):
    """Asks Sentinel for the primary before every connect, however it is reached."""

    async def connect_check_health(self, check_health: bool = True,
                                   retry_socket_connect: bool = True) -> None:
        if not self.is_connected:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health=check_health,
                                           retry_socket_connect=retry_socket_connect)


class _LaneSSLConnection(SentinelManagedSSLConnection):
    connect_check_health = _LaneConnection.connect_check_health


def sentinel_manager(url: SentinelURL, *, socket_timeout_s: float,
                     connect_timeout_s: float) -> Sentinel:
    """The Sentinels of ``url``, asked with short timeouts."""
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": socket_timeout_s,
                                       "socket_connect_timeout": connect_timeout_s}
    if url.sentinel_password:
        sentinel_kwargs["password"] = url.sentinel_password
    return Sentinel(  # type: ignore[no-untyped-call]
        list(url.sentinels), sentinel_kwargs=sentinel_kwargs)


def primary_pool(url: SentinelURL, manager: Sentinel, *, for_lane: bool,
                 **options: Any) -> SentinelConnectionPool:
    """Connections to the service's current primary, with the URL's credentials."""
    kwargs: dict[str, Any] = {"db": url.db, **options}
    if url.username:
        kwargs["username"] = url.username
    if url.password:
        kwargs["password"] = url.password
    if for_lane:
        kwargs["connection_class"] = _LaneSSLConnection if url.tls else _LaneConnection
    elif url.tls:
        kwargs["ssl"] = True
    return SentinelConnectionPool(  # type: ignore[no-untyped-call]
        url.service, manager, **kwargs)


def lane_factory(pool: SentinelConnectionPool) -> Callable[[], AbstractConnection]:
    """What a :class:`~aioqueue.lane.CommandLane` calls for a new connection."""
    return pool.make_connection


class SentinelConnection(Connection):
    """:class:`~aioqueue.connection.Connection` for ``redis+sentinel://``:
    every connection (lane, blocking lanes, pub/sub, ordinary commands) goes
    to the primary the Sentinels name at the time it connects."""

    def __init__(self, url: str, *, socket_timeout_s: float = 5.0,
                 connect_timeout_s: float = 5.0, max_connections: int = 50,
                 retries: int = 3, redis_options: Mapping[str, Any] | None = None) -> None:
        self.parsed = SentinelURL.parse(url)
        self.url = url
        self.socket_timeout_s = socket_timeout_s
        options = dict(redis_options or {})
        self.manager = sentinel_manager(self.parsed, socket_timeout_s=socket_timeout_s,
                                        connect_timeout_s=connect_timeout_s)
        # no retry inside redis-py: it would retry on the old primary's address
        # (redis/redis-py#3874); callers retry, and a new connection asks Sentinel
        self.client = Redis(connection_pool=primary_pool(
            self.parsed, self.manager, for_lane=False, decode_responses=True,
            socket_timeout=socket_timeout_s, socket_connect_timeout=connect_timeout_s,
            max_connections=max_connections, **options))
        self._lane_options = dict(
            decode_responses=True, socket_timeout=None,
            socket_connect_timeout=connect_timeout_s, socket_keepalive=True, **options)
        self.lane = CommandLane(
            lane_factory(primary_pool(self.parsed, self.manager, for_lane=True,
                                      **self._lane_options)),
            size=max_connections, timeout_s=socket_timeout_s, retries=retries)
        self.server = None

    @contextlib.asynccontextmanager
    async def blocking_lane(self, name: str) -> AsyncIterator[CommandLane]:
        options = {**self._lane_options, "client_name": name, "decode_responses": False}
        lane = CommandLane(
            lane_factory(primary_pool(self.parsed, self.manager, for_lane=True, **options)),
            size=1, timeout_s=self.socket_timeout_s, retries=0)
        try:
            yield lane
        finally:
            with anyio.CancelScope(shield=True):
                await lane.close()

    async def close(self) -> None:
        await super().close()
        await self.manager.aclose()
