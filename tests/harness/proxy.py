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

:meth:`FaultProxy.lose_reply` arms a trigger: the next command (client to
server bytes) that contains every given pattern is forwarded, the server
executes it, and its reply is dropped and the connection reset. The client
sees a cut connection and cannot tell whether the command ran: exactly the
"reply lost after the command executed" race.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
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


class _Link:
    """One proxied client connection."""

    def __init__(self, proxy: FaultProxy, client: asyncio.StreamWriter,
                 server: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.armed: ReplyTrap | None = None  # a trap waiting for this link's reply
        self.held: list[tuple[asyncio.StreamWriter, bytes]] = []

    def reset(self) -> None:
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

    def __init__(self, target_host: str, target_port: int, *, db: int = 0) -> None:
        self.target = (target_host, target_port)
        self.db = db
        self.mode = "pass"
        self.delay_s = 0.0
        self.links: set[_Link] = set()
        self.connections_accepted = 0
        self.resets = 0
        self.traps: list[ReplyTrap] = []
        self._server: asyncio.base_events.Server | None = None
        self._mode_changed = asyncio.Event()
        self.port = 0

    @classmethod
    def for_url(cls, url: str) -> FaultProxy:
        hostport = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        host, _, port = hostport.rpartition(":")
        return cls(host, int(port))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
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
                    with contextlib.suppress(Exception):
                        writer.write(data)
                link.held.clear()

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

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, *, upstream: bool) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                if self.mode == "blackhole":
                    await asyncio.Event().wait()
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
        writer.write(data)
        await writer.drain()


def _b(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value
