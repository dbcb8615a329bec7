"""One pub/sub listener per app that wakes whoever waits on a job (part of
the broker layer: it holds a redis-py pub/sub connection; on Redis Cluster,
one sharded subscription connection per primary that owns a watched channel,
see :mod:`aioqueue.connection_cluster_pubsub`).

Waiting for 10,000 jobs costs one connection (per primary), not 10,000. A waiter first
subscribes (and waits for the server to confirm), then reads the job's
status, so a job that ended before the wait began is seen at once. When the
listener reconnects it re-subscribes and wakes every waiter to read its
status again, so nothing that ended during the outage is missed.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from .backoff import RetryLoop
from .errors import RedisUnavailable, WorkerStopped, translated

if TYPE_CHECKING:
    from .broker_reads import BrokerBase

log = logging.getLogger("aioqueue.results")


class Wakeup:
    """A resettable event that also keeps the messages that set it."""

    __slots__ = ("_event", "_listener", "messages")

    def __init__(self, listener: ResultListener | None = None) -> None:
        self._event = anyio.Event()
        self._listener = listener
        self.messages: list[str] = []

    def set(self) -> None:
        self._event.set()

    def push(self, message: str) -> None:
        if len(self.messages) < 1000:
            self.messages.append(message)
        self._event.set()

    def drain(self) -> list[str]:
        messages, self.messages = self.messages, []
        self.clear()
        return messages

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    async def wait(self) -> None:
        if self._listener is None:
            await self._event.wait()
            return
        self._listener.parked += 1
        try:
            await self._event.wait()
        finally:
            self._listener.parked -= 1
        if self._listener.failed is not None:
            raise self._listener.failed


class ResultListener:
    def __init__(self, broker: BrokerBase, *, reconnect_cap_s: float = 2.0) -> None:
        self._broker = broker
        self._waiters: dict[str, set[Wakeup]] = {}
        self._confirmed: dict[str, anyio.Event] = {}
        self._pubsub: Any = None
        self._ready = anyio.Event()
        self._reconnect_cap_s = reconnect_cap_s
        self._home_channel = f"{broker.prefix}:listener:{secrets.token_hex(8)}"
        self.reconnects = 0
        self.failed: BaseException | None = None
        """The permanent error (e.g. NOPERM on SUBSCRIBE) that stopped the listener."""
        self.down: BaseException | None = None
        """Why the last connection attempt failed, while there is no connection."""
        self._attempted = anyio.Event()
        self._retry_now = anyio.Event()
        """Set by a caller that needs the connection: cuts the backoff short."""
        self.parked = 0
        """Waiters that have read the job's state and now wait for a message."""
        self._last_resubscribe = -1.0

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    def _attempt_done(self) -> None:
        self._attempted.set()
        self._attempted = anyio.Event()

    async def _connected(self) -> None:
        """Return once the listener is subscribed; raise RedisUnavailable
        (like every other call) when it cannot reach Redis, instead of
        waiting for the outage to end.

        A listener backing off after a failed attempt is asked to try again
        now: Redis may be back while the backoff still runs, and "down" must
        mean the attempt made for this caller failed, not an older one."""
        if self.failed is not None:
            raise self.failed
        with anyio.move_on_after(self._broker.socket_timeout_s):
            while not self._ready.is_set():
                attempted = self._attempted
                self._retry_now.set()
                await attempted.wait()
                if self.down is not None:
                    break
        if self.failed is not None:
            raise self.failed
        if not self._ready.is_set():
            raise RedisUnavailable(
                f"cannot reach Redis to wait for job results: {self.down or 'no connection'}"
            ) from self.down

    @contextlib.asynccontextmanager
    async def watch(self, queue: str, job_id: str) -> AsyncIterator[Wakeup]:
        await self._connected()
        channel = self._broker.keys(self._broker.route(queue, job_id)).done_channel(job_id)
        wakeup = Wakeup(self)
        waiters = self._waiters.setdefault(channel, set())
        waiters.add(wakeup)
        try:
            if len(waiters) == 1:
                confirmed = self._confirmed[channel] = anyio.Event()
                with contextlib.suppress(Exception):
                    await self._pubsub.subscribe(channel)
                # an unconfirmed subscribe (connection lost) is covered by the
                # reconnect path, which wakes every waiter
                with anyio.move_on_after(self._broker.socket_timeout_s):
                    await confirmed.wait()
            else:
                with anyio.move_on_after(self._broker.socket_timeout_s):
                    await self._confirmed[channel].wait()
            yield wakeup
        finally:
            waiters.discard(wakeup)
            if not waiters:
                del self._waiters[channel]
                self._confirmed.pop(channel, None)
                if self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel)

    def _note_resubscribe(self) -> None:
        now = anyio.current_time()
        if now - self._last_resubscribe > 0.5:
            self.reconnects += 1
        self._last_resubscribe = now

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for w in waiters:
                w.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # started at once: a caller that finds Redis down gets RedisUnavailable
        # from watch(), rather than waiting here for the outage to end
        task_status.started()
        retry = RetryLoop("result listener", log, cap_s=self._reconnect_cap_s)
        while True:
            try:
                async with self._broker.connection.open_pubsub() as pubsub:
                    await self._serve(pubsub, retry)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                delay = self._lost(exc, retry)
                if delay is None:
                    return
                with anyio.move_on_after(delay):
                    await self._retry_now.wait()
                self._retry_now = anyio.Event()

    async def _serve(self, pubsub: Any, retry: RetryLoop) -> None:
        """Subscribe and dispatch messages until the connection fails."""
        self._pubsub = pubsub
        # subscribing before anyone waits opens the one connection now:
        # concurrent first subscribes would each open their own
        await pubsub.subscribe(self._home_channel, *self._waiters)
        self.down = None
        self._ready.set()
        self._attempt_done()
        if retry.failures:
            # we may have missed notifications while away: re-check all
            self._wake_all()
            self.reconnects += 1
        retry.succeeded()
        ping_sent: float | None = None
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
            if msg is None:
                # a half-open connection is silent too: after a quiet second
                # ask for a pong, and reconnect (which wakes every waiter) if
                # it does not come in time
                now = anyio.current_time()
                if ping_sent is None:
                    await pubsub.ping()
                    ping_sent = now
                elif now - ping_sent > self._broker.socket_timeout_s:
                    raise ConnectionError("no pong from Redis: connection half-open")
            elif msg["type"] == "pong":
                ping_sent = None
            else:
                self._dispatch(msg)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        channel = msg.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if msg["type"] == "subscribe":
            event = self._confirmed.get(str(channel))
            if event is not None:
                if event.is_set():
                    # a confirmation for a channel confirmed before: redis-py
                    # reconnected and re-subscribed on its own, so messages
                    # may have been lost meanwhile
                    self._note_resubscribe()
                    for w in self._waiters.get(str(channel), ()):
                        w.set()
                event.set()
        elif msg["type"] == "message":
            data = msg.get("data")
            text = data.decode() if isinstance(data, bytes) else str(data)
            for w in self._waiters.get(str(channel), ()):
                w.push(text)

    def _lost(self, exc: Exception, retry: RetryLoop) -> float | None:
        """The connection failed: the backoff before the next attempt, or
        None when the error is permanent (every waiter then gets it)."""
        if self._ready.is_set():
            self._ready = anyio.Event()
        self.down = translated(exc)
        delay: float | None
        try:
            delay = retry.note_failure(exc)
        except WorkerStopped as stopped:
            # logged once: every waiter, now and later, gets the error
            self.failed = stopped.__cause__ or stopped
            delay = None
        # waiters read the job's state again: a job that ended while the
        # connection was away is seen; Redis down raises there
        self._wake_all()
        self._attempt_done()
        return delay
