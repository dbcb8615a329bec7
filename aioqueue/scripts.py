"""The Lua scripts, loaded once and called by SHA.

Business code never calls EVALSHA: it calls :meth:`ScriptRunner.run` through
the broker's typed methods. A server that lost its script cache (restart,
``SCRIPT FLUSH``, failover) answers NOSCRIPT; the runner loads the script
again and repeats the call. Every script is idempotent or fenced by a job id,
lease token or reservation id, so repeating a call is safe.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from .lane import CommandLane

RELOAD_ATTEMPTS = 5

SCRIPT_NAMES = (
    "enqueue", "claim", "settle", "renew", "reap", "cancel", "progress", "replay", "purge",
    "workflow", "enqueue_batch", "workflow_members", "workflow_cancel",
)


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str
    sha: str


@functools.cache
def _read(*parts: str) -> str:
    return resources.files("aioqueue").joinpath("lua", *parts).read_text("utf-8")


# Scripts that finish or keep work already in Redis: they must run when the
# server is at maxmemory (noeviction), or held jobs could not be acked or their
# leases renewed. Scripts that add work (enqueue...) stay refused under OOM.
ALLOW_OOM = frozenset({"claim", "settle", "renew", "reap", "cancel", "replay", "purge",
                       "workflow_cancel"})


# the one publishing line (includes/notify.lua), and its sharded form
PUBLISH_LINE = "  redis.call('PUBLISH', channel, message)"
SHARDED_PUBLISH_LINE = "  redis.call('SPUBLISH', channel, message)"


def _expand(text: str, lines: list[str], included: set[str], indent: str = "") -> None:
    """Inline ``-- @include <file>`` lines; an include may include others
    (before its own code), and each file is inlined once. An indented include
    line (inside a function body) is inlined with that indentation: its
    functions become closures of that function, made only when it runs."""
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped.startswith("-- @include "):
            lines.append(indent + line if line else line)
            continue
        part = stripped.removeprefix("-- @include ").strip()
        if part not in included:
            included.add(part)
            _expand(_read("includes", part), lines, included,
                    indent + line[:len(line) - len(stripped)])


_FUNCTION_START = re.compile(r"( *)local function ([A-Za-z_][A-Za-z0-9_]*)\(")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _drop_unused(lines: list[str]) -> list[str]:
    """Leave out the included functions the script never calls.

    Each ``local function`` of a script body is a new closure on every call
    (Redis runs the whole chunk per EVALSHA), so an include's unused helpers
    cost instructions and garbage on every job. A function starts with
    ``local function name(`` and ends at the first ``end`` at the same
    indentation (the includes' style, kept by tests/test_script_loader.py).
    Kept: the functions reachable from the script's own code (by name), in
    one pass over the lines.
    """
    owner: list[int] = []  # per line: the innermost function it is in (-1: none)
    blocks: list[tuple[str, int, int]] = []  # (name, first line, last line)
    open_blocks: list[tuple[str, int]] = []  # (indentation, index in blocks)
    for i, line in enumerate(lines):
        match = _FUNCTION_START.match(line)
        if match:
            blocks.append((match.group(2), i, i))
            owner.append(len(blocks) - 1)
            if not line.endswith(" end"):  # not a one-line function
                open_blocks.append((match.group(1), len(blocks) - 1))
            continue
        owner.append(open_blocks[-1][1] if open_blocks else -1)
        if open_blocks and line == open_blocks[-1][0] + "end":
            name, start, _ = blocks[open_blocks[-1][1]]
            blocks[open_blocks.pop()[1]] = (name, start, i)
    refs: dict[int, set[str]] = {}
    for i, line in enumerate(lines):
        names = set(_NAME.findall(line))
        if owner[i] >= 0 and blocks[owner[i]][1] == i:
            names.discard(blocks[owner[i]][0])  # its own definition
        refs.setdefault(owner[i], set()).update(names)
    by_name: dict[str, list[int]] = {}
    for index, (name, _, _) in enumerate(blocks):
        by_name.setdefault(name, []).append(index)
    reached: set[int] = set()
    todo = list(refs.get(-1, ()))
    while todo:
        for index in by_name.get(todo.pop(), ()):
            if index not in reached:
                reached.add(index)
                todo.extend(refs.get(index, ()))
    dropped = {i for index, (_, b, e) in enumerate(blocks) if index not in reached
               for i in range(b, e + 1)}
    return [line for i, line in enumerate(lines) if i not in dropped]


@functools.cache
def _body(name: str) -> tuple[str, ...]:
    """The lines of ``lua/<name>.lua`` with its includes, without comment
    lines (they stay in the files: not sent, nor scanned) and unused
    functions. Made once per process: every variant shares it."""
    lines: list[str] = []
    _expand(_read(f"{name}.lua"), lines, set())
    lines = [line for line in lines if not line.lstrip(" ").startswith("--")]
    return tuple(_drop_unused(lines))


@functools.cache
def load_script(name: str, *, flags: bool = False, sharded: bool = False) -> LuaScript:
    """Read ``lua/<name>.lua``; a line ``-- @include <file>`` is replaced by
    ``lua/includes/<file>`` (once, includes nested) so shared Lua functions are
    written once; included functions the script never calls are left out. With
    ``flags`` (Redis >= 7, Valkey) a script in ``ALLOW_OOM`` gets the
    ``allow-oom`` shebang flag. With ``sharded`` (Redis Cluster) events are
    published with ``SPUBLISH`` (sharded pub/sub) instead of ``PUBLISH``."""
    lines = list(_body(name))
    if flags and name in ALLOW_OOM:
        lines.insert(0, "#!lua flags=allow-oom")
    if sharded:
        # (at any indentation: an include may be inlined inside a function)
        lines = [line.replace(PUBLISH_LINE.strip(), SHARDED_PUBLISH_LINE.strip())
                 if line.strip() == PUBLISH_LINE.strip() else line for line in lines]
    source = "\n".join(lines) + "\n"
    return LuaScript(name, source, hashlib.sha1(source.encode()).hexdigest())


class _Scripts(dict[str, LuaScript]):
    """Each script made when first asked for: a worker never makes the
    producer's scripts, nor a producer the worker's."""

    def __init__(self, *, flags: bool, sharded: bool) -> None:
        super().__init__()
        self.flags = flags
        self.sharded = sharded

    def __missing__(self, name: str) -> LuaScript:
        if name not in SCRIPT_NAMES:
            raise KeyError(name)
        script = self[name] = load_script(name, flags=self.flags, sharded=self.sharded)
        return script


class ScriptRunner:
    """Calls scripts by SHA on one client, reloading on NOSCRIPT."""

    def __init__(self) -> None:
        self.scripts = _Scripts(flags=False, sharded=False)
        self.reloads = 0

    def configure(self, *, flags: bool, sharded: bool) -> None:
        """``flags``: the server understands shebang flags (Redis >= 7): let
        the scripts that settle held work run under maxmemory. ``sharded``:
        a Redis Cluster: publish events with ``SPUBLISH``."""
        self.scripts = _Scripts(flags=flags, sharded=sharded)

    async def run(
        self, lane: CommandLane, name: str, keys: list[str], args: list[Any]
    ) -> Any:
        script = self.scripts[name]
        for _ in range(RELOAD_ATTEMPTS - 1):
            try:
                return await lane.execute("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                # the cache can be flushed again between our load and our call
                await self.load(lane, name)
        return await lane.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    async def load(self, lane: CommandLane, name: str) -> None:
        self.reloads += 1
        await lane.execute("SCRIPT", "LOAD", self.scripts[name].source)
