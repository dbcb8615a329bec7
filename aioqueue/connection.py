"""The broker layer's connection side: pools, the server check, redaction and
the one translation of redis-py's errors into aioqueue's typed tree.

Two kinds of connection, on purpose (see the README, "Redis design"):

* the lane (:mod:`aioqueue.lane`) for short commands and scripts, with an
  explicit, bounded retry; every script is idempotent or fenced, so a retried
  call is harmless; a redis-py pool with the same retry policy serves pub/sub
  and the few broker-layer helpers that want redis-py's command methods;
* one dedicated connection per fetcher for the blocking wait, with no socket
  timeout and no automatic retry: redis-py would otherwise cut a long blocking
  read at ``socket_timeout`` and silently send it again.

Every broker call runs inside :func:`translate_errors`, so callers only ever
see aioqueue exceptions, and :func:`aioqueue.errors.classify` decides what is
transient from those types alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from .backoff import COMMAND_RETRY
from .errors import (
    AioqueueError,
    BrokerError,
    ConfigurationError,
    RedisAuthError,
    RedisBusy,
    RedisClusterUnavailable,
    RedisCommandError,
    RedisLoading,
    RedisOutOfMemory,
    RedisPermissionDenied,
    RedisReadOnly,
    RedisUnavailable,
    ScriptCacheLost,
    UnsupportedServer,
    WrongKeyType,
    register_translation,
)
from .lane import CommandLane

Address = tuple[str, int]


def parse_hosts(hosts: str, *, default_port: int, what: str) -> tuple[Address, ...]:
    """``host:port[,host:port...]`` of a cluster or Sentinel URL, each checked."""
    addresses = []
    for item in hosts.split(","):
        parsed = urlsplit(f"//{item.strip()}")
        try:
            port = parsed.port or default_port
        except ValueError:
            port = -1
        if not parsed.hostname or port < 1:
            raise ConfigurationError(f"{what}: bad host:port {item!r}")
        addresses.append((parsed.hostname, port))
    return tuple(addresses)

MIN_SERVER_VERSION = (6, 2, 0)

# The first word of an error reply, for the replies redis-py leaves as a plain
# ResponseError (BUSY) or that arrive wrapped by a script (codes are kept).
_REPLY_CODES: dict[str, type[BrokerError]] = {
    "BUSY": RedisBusy,
    "LOADING": RedisLoading,
    "READONLY": RedisReadOnly,
    "MASTERDOWN": RedisReadOnly,
    "MOVED": RedisClusterUnavailable,
    "ASK": RedisClusterUnavailable,
    "TRYAGAIN": RedisClusterUnavailable,
    "CLUSTERDOWN": RedisClusterUnavailable,
    "OOM": RedisOutOfMemory,
    "WRONGTYPE": WrongKeyType,
    "NOAUTH": RedisAuthError,
    "WRONGPASS": RedisAuthError,
    "NOPERM": RedisPermissionDenied,
    "NOSCRIPT": ScriptCacheLost,
}

# redis-py's own classes for the codes it recognises (it strips the code from
# the message). Order matters: subclasses before their bases.
_CLASSES: tuple[tuple[type[BaseException], type[BrokerError]], ...] = (
    (redis_errors.AuthenticationError, RedisAuthError),
    (redis_errors.AuthenticationWrongNumberOfArgsError, RedisAuthError),
    (redis_errors.AuthorizationError, RedisPermissionDenied),
    (redis_errors.NoPermissionError, RedisPermissionDenied),
    (redis_errors.BusyLoadingError, RedisLoading),
    (redis_errors.ReadOnlyError, RedisReadOnly),
    (redis_errors.MasterDownError, RedisReadOnly),
    (redis_errors.ClusterDownError, RedisClusterUnavailable),
    (redis_errors.TryAgainError, RedisClusterUnavailable),
    (redis_errors.AskError, RedisClusterUnavailable),  # MovedError too
    (redis_errors.OutOfMemoryError, RedisOutOfMemory),
    (redis_errors.NoScriptError, ScriptCacheLost),
    (redis_errors.ConnectionError, RedisUnavailable),
    (redis_errors.TimeoutError, RedisUnavailable),
    (redis_errors.InvalidResponse, RedisUnavailable),
)

_MESSAGES: dict[type[BrokerError], str] = {
    RedisBusy: "Redis is busy running a script",
    RedisLoading: "Redis is loading its data set",
    RedisReadOnly: "Redis refused a write: the server is a read-only replica",
    RedisClusterUnavailable: "Redis Cluster redirected or refused the call",
    RedisOutOfMemory: "Redis refused the write",
    WrongKeyType: "a key holds the wrong type of value for aioqueue (was it written by "
                  "something else?)",
    RedisAuthError: "Redis refused the credentials",
    RedisPermissionDenied: "Redis denied a command",
    ScriptCacheLost: "Redis lost the script again after every reload",
    RedisUnavailable: "cannot reach Redis",
    RedisCommandError: "Redis answered with an error",
}


def _kind_of(exc: BaseException) -> type[BrokerError]:
    for client_class, ours in _CLASSES:
        if isinstance(exc, client_class):
            return ours
    if isinstance(exc, OSError | TimeoutError):
        return RedisUnavailable
    if isinstance(exc, redis_errors.ResponseError):
        code = str(exc).split(" ", 1)[0]
        return _REPLY_CODES.get(code, RedisCommandError)
    return RedisCommandError


def translate(exc: BaseException, where: str = "") -> BaseException:
    """The aioqueue error for ``exc``: a redis-py error (or a socket error or
    timeout) becomes its typed counterpart, with ``where`` (e.g. a queue's key
    prefix) in the message; anything else is returned unchanged."""
    if isinstance(exc, AioqueueError) or not isinstance(
            exc, redis_errors.RedisError | OSError | TimeoutError):
        return exc
    kind = _kind_of(exc)
    at = f" ({where})" if where else ""
    error = kind(f"{_MESSAGES[kind]}: {exc}{at}")
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def translate_errors(where: str = "") -> Iterator[None]:
    """Run a block of Redis calls; redis-py's errors leave it translated."""
    try:
        yield
    except (redis_errors.RedisError, OSError, TimeoutError) as exc:
        translated = translate(exc, where)
        if translated is exc:
            raise  # already ours (RedisUnavailable is an OSError too)
        raise translated from exc


def redact(url: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, hostpart = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in creds else user}@{hostpart}"


register_translation(translate)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    name: str
    version: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        parts: list[int] = []
        for piece in self.version.split(".")[:3]:
            digits = "".join(ch for ch in piece if ch.isdigit())
            parts.append(int(digits or 0))
        return tuple(parts)

    @property
    def script_flags(self) -> bool:
        """Understands ``#!lua flags=`` shebangs (Redis >= 7, Valkey)."""
        return self.name in ("valkey", "redis") and self.version_tuple >= (7, 0, 0)


def _as_mapping(reply: Any) -> dict[str, Any]:
    if isinstance(reply, dict):
        return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in reply.items()}
    if isinstance(reply, list):
        return {str(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}
    return {}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Subscription:
    """Messages of the channels one :meth:`Connection.subscribe` opened."""

    def __init__(self, pubsub: PubSub | Any) -> None:
        self._pubsub = pubsub

    async def get(self, timeout: float) -> tuple[str, str] | None:
        """The next message as (channel, data), or None after ``timeout`` seconds."""
        with translate_errors():
            msg = await self._pubsub.get_message(ignore_subscribe_messages=True,
                                                 timeout=timeout)
        if msg is None or msg.get("type") != "message":
            return None
        return _text(msg.get("channel")), _text(msg.get("data"))


class Connection:
    """Everything that opens sockets to one Redis server: the command lane,
    a redis-py pool (pub/sub), dedicated lanes for blocking waits, and the
    start-up check. A cluster transport would offer the same methods."""

    #: events go out with SPUBLISH and are heard with SSUBSCRIBE (cluster)
    sharded_pubsub = False

    def __init__(
        self,
        url: str,
        *,
        socket_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 50,
        retries: int = 3,
        redis_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.socket_timeout_s = socket_timeout_s
        options = dict(redis_options or {})
        # a blocking pool: when all connections are busy a caller waits for one
        # instead of failing, so 10,000 concurrent waiters share a bounded pool
        pool = BlockingConnectionPool.from_url(
            url, decode_responses=True, socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(ExponentialWithJitterBackoff(cap=COMMAND_RETRY.cap_s,
                                                     base=COMMAND_RETRY.base_s), retries),
            max_connections=max_connections, timeout=None, **options)
        self.client: Redis = Redis(connection_pool=pool)
        # the hot path: scripts and record reads, on raw connections
        self._lane_options = dict(
            decode_responses=True, socket_timeout=None,
            socket_connect_timeout=connect_timeout_s, socket_keepalive=True, **options)
        self.lane = CommandLane(ConnectionPool.from_url(url, **self._lane_options).make_connection,
                                size=max_connections, timeout_s=socket_timeout_s,
                                retries=retries)
        self.server: ServerInfo | None = None

    @contextlib.asynccontextmanager
    async def blocking_lane(self, name: str) -> AsyncIterator[CommandLane]:
        """A dedicated connection for one fetcher: its blocking waits have no
        socket timeout (the wait itself is bounded) and nothing is retried
        behind the caller's back. Replies stay bytes: a claim decodes them
        itself, so a record that is not UTF-8 cannot crash the fetcher."""
        options = {**self._lane_options, "client_name": name, "decode_responses": False}
        lane = CommandLane(ConnectionPool.from_url(self.url, **options).make_connection,
                           size=1, timeout_s=self.socket_timeout_s, retries=0)
        try:
            yield lane
        finally:
            with anyio.CancelScope(shield=True):
                await lane.close()

    @contextlib.asynccontextmanager
    async def open_pubsub(self) -> AsyncIterator[Any]:
        """A pub/sub connection for :mod:`aioqueue.listener` (redis-py's
        ``PubSub``: ``subscribe``, ``unsubscribe``, ``get_message``, ``ping``),
        closed on exit; errors are the caller's to translate. The cluster
        transport yields sharded subscriptions with the same methods."""
        pubsub = self.client.pubsub()
        try:
            yield pubsub
        finally:
            with anyio.move_on_after(2, shield=True), contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    @contextlib.asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        """A pub/sub connection subscribed to ``channels`` (confirmed)."""
        async with self.open_pubsub() as pubsub:
            with translate_errors():
                await pubsub.subscribe(*channels)
            yield Subscription(pubsub)

    async def close(self) -> None:
        await self.lane.close()
        await self.client.aclose()
        await self.client.connection_pool.disconnect()

    async def check_server(self) -> ServerInfo:
        """Refuse a server that cannot run aioqueue, naming what was found."""
        where = redact(self.url)
        try:
            with translate_errors():
                # through redis-py's client: its connect timeout is separate
                # from the socket timeout, so a start-up during a network
                # blip waits for TCP to retry instead of giving up
                hello = await self.client.execute_command(  # type: ignore[no-untyped-call]
                    "HELLO")
        except RedisUnavailable as exc:
            hint = ""
            cause = str(exc.__cause__ or exc)
            if self.url.startswith("rediss://"):
                hint = (" (TLS handshake failed? the server may not speak TLS on this port, "
                        "or its certificate is not trusted: check ssl_ca_certs)")
            elif "closed" in cause or "reset" in cause.lower():
                hint = " (if the server expects TLS, use a rediss:// URL)"
            raise RedisUnavailable(f"cannot reach Redis at {where}: {cause}{hint}") from exc
        except RedisAuthError as exc:
            raise RedisAuthError(
                f"Redis at {where} refused the credentials (check the username and "
                f"password in the URL or redis_options): {exc.__cause__ or exc}") from exc
        except RedisPermissionDenied as exc:
            raise RedisPermissionDenied(
                f"Redis at {where} denied HELLO to this user: {exc.__cause__ or exc}") from exc
        except RedisCommandError as exc:
            if "DB index is out of range" in str(exc):
                raise ConfigurationError(
                    f"the database in {where} does not exist on this server") from exc
            raise
        info = _as_mapping(hello)
        server = ServerInfo(str(info.get("server", "redis")), str(info.get("version", "0")))
        if server.version_tuple < MIN_SERVER_VERSION:
            raise UnsupportedServer(
                f"{server.name} {server.version} is too old: aioqueue needs Redis >= 6.2 "
                "or Valkey (ZADD GT, LPOP with a count)")
        self.server = server
        return server
