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

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

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
        self, client: Redis, name: str, keys: list[str], args: list[Any]
    ) -> Any:
        script = self.scripts[name]
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.reloads += 1
            await client.script_load(script.source)
            return await client.evalsha(script.sha, len(keys), *keys, *args)
