"""The Lua scripts, loaded once and called by SHA.

Business code never calls EVALSHA: it calls :meth:`ScriptRunner.run` through
the broker's typed methods. A server that lost its script cache (restart,
``SCRIPT FLUSH``, failover) answers NOSCRIPT; the runner loads the script
again and repeats the call. Every script is idempotent or fenced by a job id,
lease token or reservation id, so repeating a call is safe.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from .lane import CommandLane

SCRIPT_NAMES = (
    "enqueue", "claim", "settle", "renew", "reap", "cancel", "progress", "replay", "purge",
)


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str
    sha: str


def load_script(name: str) -> LuaScript:
    source = resources.files("aioqueue").joinpath("lua", f"{name}.lua").read_text("utf-8")
    return LuaScript(name, source, hashlib.sha1(source.encode()).hexdigest())


class ScriptRunner:
    """Calls scripts by SHA on one client, reloading on NOSCRIPT."""

    def __init__(self) -> None:
        self.scripts = {name: load_script(name) for name in SCRIPT_NAMES}
        self.reloads = 0

    async def run(
        self, lane: CommandLane, name: str, keys: list[str], args: list[Any]
    ) -> Any:
        script = self.scripts[name]
        try:
            return await lane.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.load(lane, name)
            return await lane.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    async def load(self, lane: CommandLane, name: str) -> None:
        self.reloads += 1
        await lane.execute("SCRIPT", "LOAD", self.scripts[name].source)
