"""Concurrency groups in Redis (broker layer): the limits (declared by the
app, overridden by operators at runtime) and what operators see of them.

Keys (in the queue's slot; the claim, settle and reap scripts keep them, see
``lua/includes/groups.lua``): ``gring`` and ``gpark`` (zsets of groups with
waiting jobs: ready, or at their limit), ``gw:<group>`` (list of waiting
ids), ``grun:<group>`` (set of running ids: the slots), ``grunning`` (set of
groups with running jobs), ``glimits`` (hash: ``c:<task>`` declared,
``o:c:<task>`` an operator's value for every key of the task, ``o:k:<group>``
for one key; ``off`` = no limit), ``gstate`` (hash: ``waiting``, ``turn``).
A group is named ``<task>\\x1f<key>`` (``flow.group_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .broker_flow import FlowLimits, Lane
from .flow import FlowKeys, check_concurrency_key, check_max_concurrency, group_id, split_group
from .keys import check_task_name

OFF = "off"
MAX_SHOWN = 1000


@dataclass(frozen=True, slots=True)
class GroupLimit:
    """A task's limit of running jobs per concurrency key, as an operator
    sees it: ``declared`` in code, an operator's ``override`` (``"off"``:
    none), the ``effective`` value (None: no limit)."""

    task: str
    declared: int | None
    override: int | str | None
    effective: int | None


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """One concurrency key with jobs: ``running`` now, ``waiting`` (held
    back by the limit or waiting their turn), its ``limit`` (None: none),
    ``override``: an operator's value for this key alone, ``at_limit``: its
    waiting jobs wait for a slot."""

    task: str
    key: str
    running: int
    waiting: int
    limit: int | None
    override: int | str | None
    at_limit: bool


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {_text(k): _text(v) for k, v in raw.items()}
    items = list(raw or [])
    return {_text(items[i]): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _value(text: str | None) -> int | str | None:
    if text is None:
        return None
    return int(text) if text.isdigit() else text


def _effective(*values: str | None) -> int | None:
    for text in values:
        if text is not None:
            return int(text) if text.isdigit() and int(text) >= 1 else None
    return None


class ConcurrencyLimits(FlowLimits):
    """Concurrency limits of the queues of one key prefix, through a lane."""

    async def declare_concurrency(self, queue: str, declared: Mapping[str, int | None]) -> None:
        """Store the limits written in code (task -> max running per key; None
        removes a declaration the code no longer makes)."""
        fk = self.keys(queue)
        commands: list[tuple[Any, ...]] = []
        for task, limit in declared.items():
            field = "c:" + check_task_name(task)
            if limit is None:
                commands.append(("HDEL", fk.group_limits, field))
            else:
                commands.append(("HSET", fk.group_limits, field, check_max_concurrency(limit)))
        if commands:
            await self._many(fk.queue.base, commands)

    async def set_concurrency(self, queue: str, task: str, limit: int | None, *,
                              key: str | None = None) -> None:
        """An operator's limit of running jobs per key of ``task`` (or for one
        ``key``), applied by the next claim; ``limit=None``: no limit."""
        value = OFF if limit is None else str(check_max_concurrency(limit))
        await self._concurrency(queue, task, key, value)

    async def clear_concurrency(self, queue: str, task: str, *, key: str | None = None) -> None:
        """Drop an operator's value: the declared limit applies again."""
        await self._concurrency(queue, task, key, None)

    async def _concurrency(self, queue: str, task: str, key: str | None,
                           value: str | None) -> None:
        fk = self.keys(queue)
        check_task_name(task)
        field = "o:c:" + task if key is None else "o:k:" + group_id(
            task, check_concurrency_key(key))
        write: tuple[Any, ...] = (("HDEL", fk.group_limits, field) if value is None
                                  else ("HSET", fk.group_limits, field, value))
        # parked groups are looked at again by the next claims, under the new limit
        await self._many(fk.queue.base, [
            write, ("ZUNIONSTORE", fk.group_parked, 1, fk.group_parked, "WEIGHTS", 0),
            ("RPUSH", fk.queue.wake, "1")])

    async def concurrency_limits(self, queue: str) -> list[GroupLimit]:
        """Every task's declared or overridden limit per key, by task."""
        config = await self._config(self.keys(queue))
        tasks = {f.split(":", 1)[1] for f in config if f.startswith("c:")}
        tasks |= {f[4:] for f in config if f.startswith("o:c:")}
        return [GroupLimit(t, _effective(config.get("c:" + t)) if "c:" + t in config else None,
                           _value(config.get("o:c:" + t)),
                           _effective(config.get("o:c:" + t), config.get("c:" + t)))
                for t in sorted(tasks)]

    async def _config(self, fk: FlowKeys) -> dict[str, str]:
        (raw,) = await self._many(fk.queue.base, [("HGETALL", fk.group_limits)])
        return _pairs(raw)

    async def groups(self, queue: str, *, limit: int = MAX_SHOWN) -> list[GroupInfo]:
        """Concurrency keys with running or waiting jobs (at most ``limit``),
        the busiest first."""
        fk = self.keys(queue)
        ring, parked, running, raw = await self._many(fk.queue.base, [
            ("ZRANGE", fk.group_ring, 0, limit - 1), ("ZRANGE", fk.group_parked, 0, limit - 1),
            ("SRANDMEMBER", fk.group_running, limit), ("HGETALL", fk.group_limits)])
        config = _pairs(raw)
        parked_set = {_text(g) for g in parked}
        gids = list(dict.fromkeys([*(_text(g) for g in running), *(_text(g) for g in ring),
                                   *parked_set]))[:limit]
        counts = await self._many(fk.queue.base, [
            c for g in gids for c in (("SCARD", fk.group_slots(g)), ("LLEN", fk.group_waiting(g)))
        ]) if gids else []
        rows = []
        for i, gid in enumerate(gids):
            task, key = split_group(gid)
            own = config.get("o:k:" + gid)
            running_n = int(counts[2 * i])
            limit_n = _effective(own, config.get("o:c:" + task), config.get("c:" + task))
            rows.append(GroupInfo(task, key, running_n, int(counts[2 * i + 1]), limit_n,
                                  _value(own), limit_n is not None and running_n >= limit_n))
        return sorted(rows, key=lambda r: (-r.running - r.waiting, r.task, r.key))

    async def grouped_waiting(self, queue: str) -> int:
        """Jobs waiting in concurrency groups (held back or waiting their turn)."""
        fk = self.keys(queue)
        (raw,) = await self._many(fk.queue.base, [("HGET", fk.group_state, "waiting")])
        return max(0, int(raw)) if raw is not None else 0


async def declare_app_concurrency(lane: Lane, prefix: str,
                                  tasks: Mapping[str, tuple[str, int | None]]) -> None:
    """Store the concurrency limits an app's code declares (task -> (queue,
    limit or None)), once when it opens. Operator overrides are left alone."""
    by_queue: dict[str, dict[str, int | None]] = {}
    for name, (queue, limit) in tasks.items():
        by_queue.setdefault(queue, {})[name] = limit
    limits = ConcurrencyLimits(lane, prefix)
    for queue, declared in sorted(by_queue.items()):
        await limits.declare_concurrency(queue, declared)
