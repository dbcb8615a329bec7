"""Flow control values: rate limits and the ``RateLimited`` signal.

A :class:`RateLimit` is enforced by the claim script on the server's clock
(GCRA: a job may start when the limiter's theoretical arrival time minus the
burst tolerance has passed), so one limit holds across every worker and
process. Limits live in Redis (see ``broker_flow.py``): the app declares the
ones written in code when it opens, an operator may override them at runtime.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from .errors import ConfigurationError, Retry
from .keys import QueueKeys

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+)\s*$")
MAX_COUNT = 10**9
MAX_PERIOD_S = 30 * 86_400.0
MAX_RETRY_AFTER_S = 30 * 86_400.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` job starts per ``per_s`` seconds, evenly spaced, with
    up to ``burst`` starts at once after an idle spell.

    ``RateLimit.parse("10/s")``, ``"600/m"``, ``"1000/h"``, ``"5/2s"``.

    :raises ConfigurationError: a count, period or burst out of range.
    """

    count: int
    per_s: float = 1.0
    burst: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not (
                1 <= self.count <= MAX_COUNT):
            raise ConfigurationError(f"rate limit count must be an int in [1, {MAX_COUNT}], "
                                     f"got {self.count!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or not (
                1 <= self.burst <= MAX_COUNT):
            raise ConfigurationError(f"rate limit burst must be an int in [1, {MAX_COUNT}], "
                                     f"got {self.burst!r}")
        per = self.per_s
        if isinstance(per, bool) or not isinstance(per, int | float) or not math.isfinite(per) \
                or not 0.001 <= per <= MAX_PERIOD_S:
            raise ConfigurationError(f"rate limit period must be in [0.001, {MAX_PERIOD_S:g}] "
                                     f"seconds, got {per!r}")

    @classmethod
    def parse(cls, text: str, *, burst: int = 1) -> RateLimit:
        """``"<count>/<unit>"`` or ``"<count>/<n><unit>"``; unit s, m or h."""
        match = _RATE.match(text.lower()) if isinstance(text, str) else None
        if match is None or match.group(3) not in _UNITS:
            raise ConfigurationError(
                f"rate limit {text!r} must look like '10/s', '600/m', '1000/h' or '5/2s'")
        count, number, unit = match.groups()
        return cls(int(count), (float(number) if number else 1.0) * _UNITS[unit], burst)

    @classmethod
    def coerce(cls, value: RateLimit | str) -> RateLimit:
        """A :class:`RateLimit` as given, or parsed from its text form."""
        return value if isinstance(value, RateLimit) else cls.parse(value)

    @property
    def period_ms(self) -> int:
        return max(1, round(self.per_s * 1000))

    def encode(self) -> str:
        """The stored form read by the claim script: ``count period_ms burst``."""
        return f"{self.count} {self.period_ms} {self.burst}"

    @classmethod
    def decode(cls, text: str) -> RateLimit | None:
        """The stored form back; None for anything else (``off``, damage)."""
        parts = text.split(" ")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            return None
        try:
            return cls(int(parts[0]), int(parts[1]) / 1000, int(parts[2]))
        except ConfigurationError:
            return None

    def __str__(self) -> str:
        per = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.per_s, f"{self.per_s:g}s")
        text = f"{self.count}/{per}"
        return text if self.burst == 1 else f"{text} (burst {self.burst})"


class RateLimited(Retry):
    """Raise from a task when the outside world says "too many requests"
    (e.g. an HTTP 429): the job goes back to wait, without spending a try,
    and its task's limiter pauses for ``retry_after`` seconds on every
    worker.

    Subclasses :class:`Retry`, so a worker that does not know it retries the
    job after ``retry_after`` (spending a try) instead.
    """

    def __init__(self, retry_after: float = 1.0) -> None:
        ok = (isinstance(retry_after, int | float) and not isinstance(retry_after, bool)
              and math.isfinite(retry_after) and 0 <= retry_after <= MAX_RETRY_AFTER_S)
        if not ok:
            raise ConfigurationError(
                f"retry_after must be a number of seconds in [0, {MAX_RETRY_AFTER_S:g}], "
                f"got {retry_after!r}")
        super().__init__(retry_after)
        self.retry_after = float(retry_after)

    @property
    def retry_after_ms(self) -> int:
        return round(self.retry_after * 1000)


UniqueMode = Literal["unique", "debounce", "throttle"]
UNIQUE_MODES: tuple[UniqueMode, ...] = ("unique", "debounce", "throttle")
DEFAULT_UNIQUE_TTL_S = 86_400.0


def check_unique_key(value: object) -> str:
    """A unique key is 1-200 printable characters (it names a Redis key)."""
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise ConfigurationError(f"unique_key must be 1-200 printable characters, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class UniqueKey:
    """A job's unique key, as ``enqueue.lua`` takes it.

    ``unique``: while a job with the key waits or runs, enqueueing another
    answers the existing job. ``debounce``: the same, and a job that has not
    started takes the new arguments (a scheduled one also the new start).
    ``throttle``: enqueues within ``ttl_s`` of the one that took the key are
    dropped. The key also ends with its TTL.
    """

    key: str
    mode: UniqueMode = "unique"
    ttl_s: float = DEFAULT_UNIQUE_TTL_S

    def __post_init__(self) -> None:
        check_unique_key(self.key)
        if self.mode not in UNIQUE_MODES:
            raise ConfigurationError(f"unique_mode must be one of {UNIQUE_MODES}, "
                                     f"got {self.mode!r}")
        ttl = self.ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) \
                or not 0.001 <= ttl <= 10 * 365 * 86_400.0:
            raise ConfigurationError(f"unique_ttl must be 0.001 s .. 10 years, got {ttl!r}")

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))


MAX_CONCURRENCY = 10**6
GROUP_SEPARATOR = "\x1f"


def check_max_concurrency(value: object) -> int:
    """Most running jobs per concurrency key: an int in [1, 10**6]."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise ConfigurationError(
            f"max_concurrency must be an int in [1, {MAX_CONCURRENCY}], got {value!r}")
    return value


def check_concurrency_key(value: object) -> str:
    """A concurrency key is 1-200 printable characters (an int is taken as
    its decimal text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise ConfigurationError(
            f"concurrency key must be 1-200 printable characters (or an int), got {value!r}")
    return value


def group_id(task: str, key: str) -> str:
    """The stored name of a concurrency group: the task and the key (empty:
    the task's one group, when it has no key function)."""
    return f"{task}{GROUP_SEPARATOR}{key}"


def split_group(gid: str) -> tuple[str, str]:
    """(task, key) of a stored group name."""
    task, _, key = gid.partition(GROUP_SEPARATOR)
    return task, key


QUEUE_SCOPE = "q"
"""The limiter field of a queue-wide limit; a task's is ``t:<task name>``."""


def scope_field(task: str | None) -> str:
    """The field naming a limiter: the queue's (``task=None``) or a task's."""
    return QUEUE_SCOPE if task is None else f"t:{task}"


@dataclass(frozen=True, slots=True)
class FlowKeys:
    """The flow-control keys of one queue."""

    queue: QueueKeys

    @property
    def limits(self) -> str:
        return self.queue.base + "limits"

    @property
    def limiter(self) -> str:
        return self.queue.base + "limiter"

    @property
    def held(self) -> str:
        return self.queue.base + "held"

    def held_list(self, task: str) -> str:
        return f"{self.queue.base}held:{task}"

    def unique(self, key: str) -> str:
        return f"{self.queue.base}uniq:{key}"

    # concurrency groups (lua/includes/groups.lua)
    @property
    def group_ring(self) -> str:
        return self.queue.base + "gring"

    @property
    def group_parked(self) -> str:
        return self.queue.base + "gpark"

    @property
    def group_running(self) -> str:
        return self.queue.base + "grunning"

    @property
    def group_limits(self) -> str:
        return self.queue.base + "glimits"

    @property
    def group_state(self) -> str:
        return self.queue.base + "gstate"

    def group_waiting(self, gid: str) -> str:
        return f"{self.queue.base}gw:{gid}"

    def group_slots(self, gid: str) -> str:
        return f"{self.queue.base}grun:{gid}"
