"""A lean command path for the hot commands (scripts, HMGET).

redis-py's client layer costs more CPU per command than the whole Lua script
that enqueues a job: a pool with locks and observability hooks, a retry
wrapper, and ``asyncio.wait_for`` (a new task) for every socket timeout. The
lane keeps redis-py's connection and protocol parser but drives them directly:
a list of idle connections, a slot counter that bounds how many exist (a
free slot is taken without a call; a full lane queues waiters in order),
``asyncio.timeout`` for the deadline, and a bounded retry (the one
backoff policy, :data:`aioqueue.backoff.COMMAND_RETRY`) for the (idempotent
or fenced) commands sent through it. ``benchmarks/lane.py`` measures it
against a plain redis-py pool.

Its primitives are asyncio's, not anyio's, on purpose: anyio's semaphore and
cancel scope always yield to the event loop, which on the 2-core box cost
about 17 microseconds per command each, more than the command itself.
asyncio's semaphore also takes a free slot without yielding, but costs seven
Python calls per command where the counter costs none; a cancelled wait for
a slot raises ``CancelledError`` (nothing else: tests/test_lane.py).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection

from .backoff import COMMAND_RETRY
from .errors import RedisUnavailable


def pack(args: Sequence[Any]) -> bytes:
    """RESP-encode one command. Our commands carry only str, int and float
    arguments, so this is much simpler (and several times faster) than
    redis-py's general encoder."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        kind = type(arg)  # the exact types first: one compare each
        if kind is str:
            data = arg.encode()
        elif kind is bytes:
            data = arg
        elif kind is int or kind is float:
            data = repr(arg).encode()
        elif isinstance(arg, str):
            data = str.encode(arg)
        elif isinstance(arg, bytes):
            data = bytes(arg)
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = repr(int(arg)).encode()  # an IntEnum's repr is not its number
        elif isinstance(arg, float):
            data = repr(float(arg)).encode()
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis")
        append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


_RETRYABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError, OSError)


class CommandLane:
    """Runs commands on at most ``size`` connections made by ``factory``."""

    def __init__(
        self,
        factory: Callable[[], AbstractConnection],
        *,
        size: int,
        timeout_s: float | None,
        retries: int,
    ) -> None:
        self._factory = factory
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._idle: list[AbstractConnection] = []
        self._all: set[AbstractConnection] = set()
        self.timeout_s = timeout_s
        self.retries = retries
        self.size = size

    async def execute(self, *args: Any, timeout_s: float | None = -1.0) -> Any:
        """Send one command and return its reply (errors raised as redis-py's)."""
        replies = await self._run([args], timeout_s, single=True)
        return replies[0]

    async def execute_many(self, commands: Sequence[Sequence[Any]],
                           timeout_s: float | None = -1.0) -> list[Any]:
        """Pipeline commands on one connection; error replies are returned in
        place (as exceptions), connection failures raised."""
        return await self._run(commands, timeout_s, single=False)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RedisUnavailable("the connection lane is closed (the app was closed)")

    async def _run(self, commands: Sequence[Sequence[Any]], timeout_s: float | None,
                   single: bool) -> list[Any]:
        timeout = self.timeout_s if timeout_s == -1.0 else timeout_s
        attempt = 0
        while True:
            if self._closed:
                self._check_open()
            try:
                if self._free > 0 and not self._waiters:
                    self._free -= 1
                else:
                    await self._wait_for_slot()
                try:
                    if self._closed:
                        self._check_open()
                    return await self._on_connection(commands, timeout, single)
                finally:
                    self._release()
            except _RETRYABLE as exc:
                if isinstance(exc, redis_errors.AuthenticationError | RedisUnavailable) \
                        or attempt >= self.retries:
                    if isinstance(exc, TimeoutError) and not isinstance(
                            exc, redis_errors.TimeoutError):
                        raise redis_errors.TimeoutError(
                            f"no reply from Redis within {timeout} s") from exc
                    raise
                attempt += 1
                await anyio.sleep(COMMAND_RETRY.delay_s(attempt))

    async def _wait_for_slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # a releaser hands its slot over (set_result)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot just as we were cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # skip waiters cancelled meanwhile
                waiter.set_result(None)
                return
        self._free += 1

    async def _on_connection(self, commands: Sequence[Sequence[Any]], timeout: float | None,
                             single: bool) -> list[Any]:
        conn = self._idle.pop() if self._idle else self._new()
        healthy = False
        try:
            async with asyncio.timeout(timeout):
                if single:
                    await conn.send_packed_command(pack(commands[0]), check_health=False)
                    try:
                        reply = await conn.read_response()
                    except redis_errors.ResponseError:
                        healthy = True
                        raise
                    healthy = True
                    return [reply]
                await conn.send_packed_command(b"".join(pack(c) for c in commands),
                                               check_health=False)
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response())
                    except redis_errors.ResponseError as exc:
                        replies.append(exc)
                healthy = True
                return replies
        finally:
            if healthy and not self._closed:
                self._idle.append(conn)
            else:
                self._all.discard(conn)
                with anyio.CancelScope(shield=True):
                    try:
                        await conn.disconnect(nowait=True)
                    except Exception:
                        pass

    def _new(self) -> AbstractConnection:
        conn = self._factory()
        self._all.add(conn)
        return conn

    async def close(self) -> None:
        """Disconnect every connection; later calls raise RedisUnavailable."""
        self._closed = True
        for conn in list(self._all):
            try:
                await conn.disconnect(nowait=True)
            except Exception:
                pass
        self._all.clear()
        self._idle.clear()
