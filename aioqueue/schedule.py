"""Periodic tasks: cron expressions and fixed intervals, fired exactly once
per tick by any number of supervisors, without a leader.

Every supervisor that consumes a schedule's queue wakes at each tick and
enqueues the tick's job with the schedule guard of ``enqueue.lua``: the
script records the last fired tick per schedule (a sorted set in the queue's
slot) and refuses a tick that was already fired, so exactly one of them
enqueues it. Ticks are computed from the server's clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .prepared import PreparedJob
    from .task import Task

MissedPolicy = Literal["skip", "run_once"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {tz!r}") from exc


@dataclass(frozen=True, slots=True)
class Schedule:
    """One periodic schedule of a task.

    :param missed: what to do with ticks missed while no supervisor ran
        (or that could not be fired within ``grace_s``): ``"run_once"`` fires
        the latest missed tick once on recovery; ``"skip"`` drops them.
    """

    name: str
    task: Task[Any, Any]
    args_json: str
    cron: str | None = None
    every: timedelta | None = None
    tz: tzinfo = UTC
    missed: MissedPolicy = "run_once"
    grace_s: float = 5.0

    @property
    def queue(self) -> str:
        return self.task.target_queue

    def job(self, tick_ms: int) -> PreparedJob:
        """The job of one tick, with the task's options."""
        return self.task.prepare_payload(self.args_json, job_id=self.job_id(tick_ms))

    @property
    def job_prefix(self) -> str:
        return f"cron.{self.name}."

    def job_id(self, tick_ms: int) -> str:
        return f"{self.job_prefix}{tick_ms}"

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.tz})"
        assert self.every is not None
        return f"every {self.every.total_seconds():g}s"

    def next_after(self, after_ms: int) -> int:
        """The first tick strictly after ``after_ms`` (epoch ms)."""
        if self.every is not None:
            step = int(self.every.total_seconds() * 1000)
            return (after_ms // step + 1) * step
        assert self.cron is not None
        start = datetime.fromtimestamp(after_ms / 1000, self.tz)
        return int(next(iter(CronSim(self.cron, start))).timestamp() * 1000)

    def latest_at_or_before(self, now_ms: int) -> int:
        """The last tick at or before ``now_ms``."""
        if self.every is not None:
            step = int(self.every.total_seconds() * 1000)
            return now_ms // step * step
        assert self.cron is not None
        start = datetime.fromtimestamp(now_ms / 1000 + 1, self.tz)
        return int(next(iter(CronSim(self.cron, start, reverse=True))).timestamp() * 1000)


def make_schedule(
    task: Task[Any, Any],
    *,
    cron: str | None,
    every: timedelta | float | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str | None,
    tz: str | tzinfo,
    missed: MissedPolicy,
) -> Schedule:
    if (cron is None) == (every is None):
        raise ConfigurationError("give a schedule either cron=... or every=...")
    if every is not None and not isinstance(every, timedelta):
        every = timedelta(seconds=float(every))
    if every is not None and every.total_seconds() < 0.1:
        raise ConfigurationError("every= must be at least 100 ms")
    zone = _zone(tz)
    if cron is not None:
        try:
            CronSim(cron, datetime.now(zone))
        except CronSimError as exc:
            raise ConfigurationError(f"invalid cron expression {cron!r}: {exc}") from exc
    if missed not in ("skip", "run_once"):
        raise ConfigurationError("missed= must be 'skip' or 'run_once'")
    schedule_name = _UNSAFE.sub("_", name or task.name)[:80]
    return Schedule(
        name=schedule_name, task=task, args_json=task.codec.encode(args, kwargs),
        cron=cron, every=every, tz=zone, missed=missed,
    )
