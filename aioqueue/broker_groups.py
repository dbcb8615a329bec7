"""Concurrency groups in Redis (broker layer): the limits (declared by the
app, overridden by operators at runtime) and what operators see of them.

Keys (in the queue's slot; the claim, settle and reap scripts keep them, see
``lua/includes/groups.lua``): ``gring`` and ``gpark`` (zsets of groups with
waiting jobs: ready, or at their limit), ``gw:<group>`` (list of waiting
ids), ``grun:<group>`` (set of running ids: the slots), ``grunning`` (set of
groups with running jobs), ``glimits`` (hash: ``c:<task>`` declared,
``o:c:<task>`` an operator's value for every key of the task, ``o:k:<group>``
for one key; ``off`` = no limit; ``r:<task>`` / ``o:r:<task>`` the rate limit
of each key, ``count period_ms burst``), ``gtat:<group>`` (string: a key's
rate limiter state, expiring when idle), ``gstate`` (hash: ``waiting``,
``turn``).
A group is named ``<task>\\x1f<key>`` (``flow.group_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .broker_flow import FlowLimits, Lane
from .flow import (
    FlowKeys,
    RateLimit,
    check_concurrency_key,
    check_max_concurrency,
    group_id,
    split_group,
)
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
    key_rate_declared: RateLimit | None = None
    """Each key's own rate limit, declared in code."""
    key_rate_override: RateLimit | str | None = None
    key_rate_effective: RateLimit | None = None


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

    async def declare_concurrency(
        self, queue: str, declared: Mapping[str, int | None],
        key_rates: Mapping[str, RateLimit | None] | None = None,
    ) -> None:
        """Store the limits written in code (task -> max running per key, and
        task -> each key's rate limit; None removes a declaration the code no
        longer makes)."""
        fk = self.keys(queue)
        commands: list[tuple[Any, ...]] = []
        for task, limit in declared.items():
            field = "c:" + check_task_name(task)
            if limit is None:
                commands.append(("HDEL", fk.group_limits, field))
            else:
                commands.append(("HSET", fk.group_limits, field, check_max_concurrency(limit)))
        for task, rate in (key_rates or {}).items():
            field = "r:" + check_task_name(task)
            commands.append(("HDEL", fk.group_limits, field) if rate is None
                            else ("HSET", fk.group_limits, field, rate.encode()))
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

    async def set_key_rate(self, queue: str, task: str, limit: RateLimit | None) -> None:
        """An operator's rate limit for each key of ``task`` (each key its own
        limiter), applied by the next claim; ``limit=None``: no limit."""
        await self._group_field(queue, "o:r:" + check_task_name(task),
                                OFF if limit is None else limit.encode())

    async def clear_key_rate(self, queue: str, task: str) -> None:
        """Drop an operator's key rate limit: the declared one applies again."""
        await self._group_field(queue, "o:r:" + check_task_name(task), None)

    async def _concurrency(self, queue: str, task: str, key: str | None,
                           value: str | None) -> None:
        check_task_name(task)
        field = "o:c:" + task if key is None else "o:k:" + group_id(
            task, check_concurrency_key(key))
        await self._group_field(queue, field, value)

    async def _group_field(self, queue: str, field: str, value: str | None) -> None:
        fk = self.keys(queue)
        write: tuple[Any, ...] = (("HDEL", fk.group_limits, field) if value is None
                                  else ("HSET", fk.group_limits, field, value))
        # parked groups are looked at again by the next claims, under the new limit
        await self._many(fk.queue.base, [
            write, ("ZUNIONSTORE", fk.group_parked, 1, fk.group_parked, "WEIGHTS", 0),
            ("RPUSH", fk.queue.wake, "1")])

    async def concurrency_limits(self, queue: str) -> list[GroupLimit]:
        """Every task's declared or overridden limit per key, by task."""
        config = await self._config(self.keys(queue))
        tasks = {f.split(":", 1)[1] for f in config if f[:2] in ("c:", "r:")}
        tasks |= {f[4:] for f in config if f[:4] in ("o:c:", "o:r:")}
        return [_group_limit(t, config) for t in sorted(tasks)]

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


def _group_limit(task: str, config: dict[str, str]) -> GroupLimit:
    declared = config.get("c:" + task)
    raw_rate = config.get("o:r:" + task)
    rate_declared = RateLimit.decode(config.get("r:" + task, ""))
    rate_override: RateLimit | str | None = raw_rate
    if raw_rate is not None and raw_rate != OFF:
        rate_override = RateLimit.decode(raw_rate) or raw_rate
    rate_effective = rate_declared
    if raw_rate is not None:
        rate_effective = rate_override if isinstance(rate_override, RateLimit) else None
    return GroupLimit(task, _effective(declared) if declared is not None else None,
                      _value(config.get("o:c:" + task)),
                      _effective(config.get("o:c:" + task), declared),
                      rate_declared, rate_override, rate_effective)


async def declare_app_concurrency(
    lane: Lane, prefix: str,
    tasks: Mapping[str, tuple[str, int | None, RateLimit | None]],
) -> None:
    """Store the concurrency limits an app's code declares (task -> (queue,
    max running per key or None, each key's rate limit or None)), once when
    it opens. Operator overrides are left alone."""
    by_queue: dict[str, tuple[dict[str, int | None], dict[str, RateLimit | None]]] = {}
    for name, (queue, limit, rate) in tasks.items():
        limits_of, rates_of = by_queue.setdefault(queue, ({}, {}))
        limits_of[name] = limit
        rates_of[name] = rate
    limits = ConcurrencyLimits(lane, prefix)
    for queue, (declared, rates) in sorted(by_queue.items()):
        await limits.declare_concurrency(queue, declared, rates)
