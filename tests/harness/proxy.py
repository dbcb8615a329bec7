"""An asyncio TCP fault proxy between Redis clients and a server.

It listens on a free loopback port and forwards every accepted connection to
the server. A test (or the soak nemesis) switches the mode at any time:

* ``pass``: forward both ways;
* ``delay``: forward, each chunk ``delay_s`` late (both directions);
* ``hold``: keep reading from both sides but forward nothing until the mode
  changes back (what was read is then delivered, in order);
* ``blackhole``: read and drop everything, both directions, never close: a
  half-open connection as the client sees it;
* ``reset``: close every connection with an RST (SO_LINGER 0) and refuse new
  ones the same way.

:meth:`FaultProxy.degrade` models a slow, lossy network in ``pass`` mode
(this kernel has no ``netem``): every chunk is delivered ``latency_s`` late
in each direction, as latency (pipelined: chunks in flight do not wait for
one another), and with probability ``loss`` a chunk is "lost" and held for a
retransmission timeout drawn from ``rto_s`` (200 ms - 1 s). Bytes on a TCP
stream cannot vanish without breaking it; what packet loss does to a TCP
stream is exactly that: a segment arrives an RTO late and everything behind
it in that direction waits for it (head-of-line blocking), so delivery stays
in order. The draws come from a seeded generator. The worst added delay of
one direction is ``latency_s + rto_s[1]``.

:meth:`FaultProxy.lose_reply` arms a trigger: the next command (client to
server bytes) that contains every given pattern is forwarded, the server
executes it, and its reply is dropped and the connection reset. The client
sees a cut connection and cannot tell whether the command ran: exactly the
"reply lost after the command executed" race.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field

MODES = ("pass", "delay", "hold", "blackhole", "reset")


@dataclass
class ReplyTrap:
    """Armed by :meth:`FaultProxy.lose_reply`; ``fired`` is set once it caught
    a reply (``reply`` holds the dropped bytes)."""

    patterns: tuple[bytes, ...]
    reply_contains: bytes | None
    fired: asyncio.Event = field(default_factory=asyncio.Event)
    armed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a matching command passed: from then on its reply is caught.
    (An idle fetcher sends its wait and its claim together, so a claim sent
    before the trap existed answers the next job: wait for ``armed``.)"""
    command: bytes = b""
    reply: bytes = b""


@dataclass(frozen=True)
class Degradation:
    """A slow, lossy network: see :meth:`FaultProxy.degrade`."""

    latency_s: float = 0.0
    loss: float = 0.0
    rto_s: tuple[float, float] = (0.2, 1.0)

    def __post_init__(self) -> None:
        if self.latency_s < 0 or not 0 <= self.loss < 1:
            raise ValueError(f"bad degradation {self}")
        if not 0 <= self.rto_s[0] <= self.rto_s[1]:
            raise ValueError(f"bad retransmission timeout range {self.rto_s}")

    @property
    def active(self) -> bool:
        return self.latency_s > 0 or self.loss > 0

    def extra_s(self, rng: random.Random) -> float:
        """How late one chunk arrives: the latency, plus an RTO if it was lost."""
        late = self.latency_s
        if self.loss and rng.random() < self.loss:
            late += rng.uniform(*self.rto_s)
        return late


class _Outbox:
    """One direction of a link: chunks leave in order, each at its release
    time (never before the chunk ahead of it: TCP delivers in order)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.queue: deque[tuple[float, bytes]] = deque()
        self.ready = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.last_release = 0.0
        self.task = asyncio.ensure_future(self._send())

    def put(self, data: bytes, late_s: float) -> None:
        release = max(time.monotonic() + late_s, self.last_release)
        self.last_release = release
        self.queue.append((release, data))
        self.idle.clear()
        self.ready.set()

    async def _send(self) -> None:
        try:
            while True:
                while not self.queue:
                    self.idle.set()
                    self.ready.clear()
                    await self.ready.wait()
                release, data = self.queue.popleft()
                wait = release - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.writer.write(data)
                await self.writer.drain()
        except (ConnectionError, OSError, RuntimeError):
            pass  # the connection was cut: the rest is lost with it
        finally:
            self.queue.clear()
            self.idle.set()


class _Link:
    """One proxied client connection."""

    def __init__(self, proxy: FaultProxy, client: asyncio.StreamWriter,
                 server: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.armed: ReplyTrap | None = None  # a trap waiting for this link's reply
        self.held: list[tuple[asyncio.StreamWriter, bytes]] = []
        self.outboxes = {id(client): _Outbox(client), id(server): _Outbox(server)}

    def send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Forward ``data`` through the degraded network (if any), in order."""
        proxy = self.proxy
        self.outboxes[id(writer)].put(data, proxy.degradation.extra_s(proxy.rng))

    def stop(self) -> None:
        for outbox in self.outboxes.values():
            outbox.task.cancel()

    def reset(self) -> None:
        self.stop()
        for writer in (self.client, self.server):
            _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()


class FaultProxy:
    """``async with FaultProxy(host, port) as proxy: proxy.url``."""

    def __init__(self, target_host: str, target_port: int, *, db: int = 0,
                 also_listen_on: tuple[str, ...] = ()) -> None:
        self.target = (target_host, target_port)
        self.also_listen_on = also_listen_on
        """More local addresses to accept on, same port (a veth end that a
        network namespace reaches the host at)."""
        self.db = db
        self.mode = "pass"
        self.delay_s = 0.0
        self.degradation = Degradation()
        self.rng = random.Random(0)
        self.links: set[_Link] = set()
        self.connections_accepted = 0
        self.resets = 0
        self.traps: list[ReplyTrap] = []
        self._server: asyncio.base_events.Server | None = None
        self._more_servers: list[asyncio.base_events.Server] = []
        self._mode_changed = asyncio.Event()
        self.port = 0

    @classmethod
    def for_url(cls, url: str, *, also_listen_on: tuple[str, ...] = ()) -> FaultProxy:
        hostport = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        host, _, port = hostport.rpartition(":")
        return cls(host, int(port), also_listen_on=also_listen_on)

    @property
    def url(self) -> str:
        return self.url_at("127.0.0.1")

    def url_at(self, host: str) -> str:
        """The proxy's URL at one of its listening addresses."""
        return f"redis://{host}:{self.port}/{self.db}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        for host in self.also_listen_on:
            self._more_servers.append(
                await asyncio.start_server(self._accept, host, self.port))
        return self

    async def close(self) -> None:
        for more in self._more_servers:
            more.close()
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            link.reset()
        self.links.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- control ----------------------------------------------------------

    def set_mode(self, mode: str, delay_s: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.delay_s = delay_s
        if mode == "reset":
            self.reset_all()
        self._mode_changed.set()
        self._mode_changed = asyncio.Event()
        if mode == "pass":
            for link in list(self.links):
                for writer, data in link.held:
                    link.send(writer, data)
                link.held.clear()

    def degrade(self, latency_s: float = 0.0, loss: float = 0.0,
                rto_s: tuple[float, float] = (0.2, 1.0), *, seed: int | None = None) -> None:
        """From now on (in ``pass`` mode) add ``latency_s`` each way and hold a
        fraction ``loss`` of the chunks for a retransmission timeout drawn from
        ``rto_s`` (see the module docstring); ``degrade()`` alone heals it.
        ``seed`` restarts the generator the drops are drawn from."""
        self.degradation = Degradation(latency_s, loss, rto_s)
        if seed is not None:
            self.rng = random.Random(seed)

    def reset_all(self) -> int:
        """Cut every open connection (RST); returns how many."""
        links = list(self.links)
        for link in links:
            link.reset()
        self.links.clear()
        self.resets += len(links)
        return len(links)

    def lose_reply(self, *patterns: bytes | str,
                   reply_contains: bytes | str | None = None) -> ReplyTrap:
        """Drop the reply to the next command containing every pattern (and,
        if given, whose reply contains ``reply_contains``), then reset that
        connection. Replies not matching ``reply_contains`` pass and the trap
        stays armed."""
        trap = ReplyTrap(tuple(_b(p) for p in patterns),
                         None if reply_contains is None else _b(reply_contains))
        self.traps.append(trap)
        return trap

    # -- plumbing -----------------------------------------------------------

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
                      ) -> None:
        self.connections_accepted += 1
        if self.mode == "reset":
            _abort(c_writer)
            return
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(c_writer)
            return
        link = _Link(self, c_writer, s_writer)
        self.links.add(link)
        up = asyncio.ensure_future(self._pump(link, c_reader, s_writer, upstream=True))
        down = asyncio.ensure_future(self._pump(link, s_reader, c_writer, upstream=False))
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            self.links.discard(link)
            if self.mode != "blackhole":
                link.reset()
            link.stop()

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, *, upstream: bool) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                if self.mode == "blackhole":
                    await asyncio.Event().wait()
                # what is still on its way arrives before the connection closes
                await link.outboxes[id(writer)].idle.wait()
                return
            if upstream and link.armed is None:
                for trap in self.traps:
                    if not trap.fired.is_set() and all(p in data for p in trap.patterns):
                        link.armed = trap
                        trap.armed.set()
                        trap.command = data
                        break
            if not upstream and link.armed is not None:
                trap = link.armed
                if trap.reply_contains is None or trap.reply_contains in data:
                    trap.reply = data
                    self.traps.remove(trap)
                    trap.fired.set()
                    self.resets += 1
                    link.reset()
                    return
                if trap.reply_contains is None:
                    link.armed = None
                # else stay armed: pipelined commands (the fetcher sends its
                # wait and its claim together) may answer in several chunks
            await self._forward(link, writer, data)

    async def _forward(self, link: _Link, writer: asyncio.StreamWriter, data: bytes) -> None:
        mode = self.mode
        if mode == "blackhole":
            return
        if mode == "hold":
            link.held.append((writer, data))
            return
        if mode == "delay" and self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        link.send(writer, data)


def _b(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value
