"""Redis Cluster slots: the CRC16 hash slot of a key (of its hash tag) and
the map of which primary serves each slot, shared by every cluster lane and
the sharded pub/sub connections of one broker (see
:mod:`aioqueue.connection_cluster`)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from redis import exceptions as redis_errors

from .connection import Address

SLOTS = 16384


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key``: CRC16 of its hash tag (or of the key) mod 16384."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            return _tag_slot(raw[start + 1:end])
    return _crc16(raw) % SLOTS


@functools.lru_cache(maxsize=4096)
def _tag_slot(tag: bytes) -> int:
    """Slots of hash tags, cached: aioqueue's keys carry one tag per queue."""
    return _crc16(tag) % SLOTS


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_TABLE = _crc16_table()


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


# commands whose keys do not start at argument 1
_KEYLESS = frozenset({"TIME", "PING", "WAIT", "WAITAOF", "INFO", "HELLO", "ASKING",
                      "CLUSTER", "SCRIPT", "CLIENT", "COMMAND"})


def command_key(args: Sequence[Any]) -> Any:
    """The first key of one command (None for keyless commands)."""
    name = str(args[0]).upper()
    if name in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"):
        return args[3] if int(args[2]) > 0 else None
    if name in _KEYLESS or len(args) < 2:
        return None
    return args[1]


class SlotMap:
    """Which primary serves each slot, shared by every lane of one broker."""

    def __init__(self, seeds: Iterable[Address]) -> None:
        self.seeds = list(seeds)
        self._owner: list[Address | None] = [None] * SLOTS
        self.primaries: list[Address] = []
        self.version = 0
        self._lock = asyncio.Lock()

    def owner(self, slot: int) -> Address | None:
        return self._owner[slot]

    def moved(self, slot: int, address: Address) -> None:
        """Take a MOVED reply's word for one slot until the next reload."""
        self._owner[slot] = address
        if address not in self.primaries:
            self.primaries.append(address)

    async def reload(self, ask: Callable[[Address], Any], seen_version: int) -> None:
        """Reload from the first node that answers ``CLUSTER SLOTS``; callers
        that saw the same version share one reload."""
        async with self._lock:
            if self.version != seen_version:
                return  # someone reloaded while we waited
            last: BaseException | None = None
            for address in [*self.primaries, *self.seeds]:
                try:
                    reply = await ask(address)
                except (redis_errors.RedisError, OSError, TimeoutError) as exc:
                    last = exc
                    continue
                self._load(reply, address)
                return
            assert last is not None
            raise last

    def _load(self, reply: Any, queried: Address) -> None:
        owner: list[Address | None] = [None] * SLOTS
        primaries: list[Address] = []
        for entry in reply:
            start, end, node = int(entry[0]), int(entry[1]), entry[2]
            host = _text(node[0]) or queried[0]
            address = (host, int(node[1]))
            if address not in primaries:
                primaries.append(address)
            owner[start:end + 1] = [address] * (end - start + 1)
        self._owner, self.primaries = owner, primaries
        self.version += 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
