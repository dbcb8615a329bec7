"""Enqueue options: one object, validated once, turned into stored fields once.

Every enqueue path (``task.enqueue``, ``task.options(...)``, ``App.enqueue``,
``App.enqueue_with``, schedules) builds an :class:`EnqueueOptions` and nothing
else reads option values. A field left :data:`UNSET` takes the task's default;
``None`` is a value of its own where it has a meaning (``timeout=None``: no
timeout, whatever the task says).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypedDict

from .errors import ConfigurationError
from .flow import (
    DEFAULT_UNIQUE_TTL_S,
    UniqueKey,
    UniqueMode,
    check_concurrency_key,
    check_unique_key,
)
from .keys import check_name
from .record import override_fields

MIN_PRIORITY, MAX_PRIORITY = -100, 100
MAX_SECONDS = 10 * 365 * 86_400.0


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET
"""An option not given: the task's default applies. Distinct from ``None``."""

UnsetType = Literal[Unset.UNSET]


def _seconds(name: str, value: object, *, minimum: float, inclusive: bool) -> None:
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and math.isfinite(value) and value <= MAX_SECONDS
          and (value >= minimum if inclusive else value > minimum))
    if not ok:
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise ConfigurationError(
            f"{name} must be a finite number of seconds {bound} and at most "
            f"{MAX_SECONDS:g} (10 years), got {value!r}")


def _count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**9:
        raise ConfigurationError(f"{name} must be an int in [1, 10**9], got {value!r}")


def _priority(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (
            MIN_PRIORITY <= value <= MAX_PRIORITY):
        raise ConfigurationError(
            f"priority must be an int in [{MIN_PRIORITY}, {MAX_PRIORITY}], got {value!r}")


def _ms(seconds: float) -> int:
    """A positive duration in whole milliseconds (never 0, which means "none")."""
    return max(1, round(seconds * 1000))


class EnqueueKwargs(TypedDict, total=False):
    """``task.options(**kwargs)`` and ``app.enqueue_with(..., **kwargs)``: a
    key not given is UNSET (see :class:`EnqueueOptions` for the meanings;
    passing ``UNSET`` explicitly, from a wrapper's default, means the same)."""

    queue: str | None | UnsetType
    delay: float | None | UnsetType
    at: datetime | None | UnsetType
    priority: int | None | UnsetType
    job_id: str | None | UnsetType
    max_tries: int | None | UnsetType
    max_deliveries: int | None | UnsetType
    timeout: float | None | UnsetType
    result_ttl: float | None | UnsetType
    unique_key: str | None | UnsetType
    unique_mode: UniqueMode | None | UnsetType
    unique_ttl: float | None | UnsetType
    concurrency_key: str | int | None | UnsetType


DEFAULT_WHEN_NONE = ("queue", "priority", "max_tries", "unique_mode", "unique_ttl",
                     "concurrency_key")
"""Options for which ``None`` has no meaning of its own: it means "the
default", as UNSET does (so ``queue=None`` from an optional CLI flag works)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EnqueueOptions:
    """How to enqueue a job. Fields left UNSET take the task's default.

    :param queue: the queue the job goes to (``None``: as UNSET, the default).
    :param delay: seconds to wait before the job may run (``None``: none).
    :param at: when the job may run; a naive datetime is this process's local
        time, an aware one is taken in its own zone.
    :param priority: higher runs first, in [-100, 100] (``None``: the default).
    :param job_id: the job's id; enqueueing an existing id does nothing.
    :param max_tries: attempts before the job is dead-lettered (``None``: the
        default).
    :param max_deliveries: lease expiries tolerated before it is dead-lettered
        (``None``: the worker's setting).
    :param timeout: seconds one attempt may run (``None``: no timeout).
    :param result_ttl: seconds the result is kept (``None``: the app's).
    :param unique_key: while a job enqueued with this key waits or runs,
        enqueueing another answers that job (``unique_mode``, see the README,
        "Flow control"); 1-200 printable characters.
    :param unique_mode: ``"unique"`` (default), ``"debounce"`` (the waiting
        job takes the new arguments and, if delayed, the new start) or
        ``"throttle"`` (enqueues within ``unique_ttl`` are dropped).
    :param unique_ttl: seconds the key lives at most (default one day; for
        ``throttle``: the window).
    :param concurrency_key: this job's key for its task's ``max_concurrency``
        (instead of the task's ``concurrency_key`` function); 1-200 printable
        characters or an int. The task must declare ``max_concurrency``.

    :raises ConfigurationError: an invalid value (nothing is written).
    """

    queue: str | None | UnsetType = UNSET
    delay: float | None | UnsetType = UNSET
    at: datetime | None | UnsetType = UNSET
    priority: int | None | UnsetType = UNSET
    job_id: str | None | UnsetType = UNSET
    max_tries: int | None | UnsetType = UNSET
    max_deliveries: int | None | UnsetType = UNSET
    timeout: float | None | UnsetType = UNSET
    result_ttl: float | None | UnsetType = UNSET
    unique_key: str | None | UnsetType = UNSET
    unique_mode: UniqueMode | None | UnsetType = UNSET
    unique_ttl: float | None | UnsetType = UNSET
    concurrency_key: str | int | None | UnsetType = UNSET

    def __post_init__(self) -> None:
        for name in DEFAULT_WHEN_NONE:
            if getattr(self, name) is None:
                object.__setattr__(self, name, UNSET)
        self._check_values()
        if isinstance(self.delay, int | float) and isinstance(self.at, datetime):
            raise ConfigurationError("give delay or at, not both")

    def _check_values(self) -> None:
        for name in ("queue", "job_id"):
            value = getattr(self, name)
            if isinstance(value, str):
                check_name(name, value)
            elif value not in (None, UNSET):
                raise ConfigurationError(f"{name} must be a string, got {value!r}")
        if self.delay not in (None, UNSET):
            _seconds("delay", self.delay, minimum=0, inclusive=True)
        if self.at not in (None, UNSET) and not isinstance(self.at, datetime):
            raise ConfigurationError(f"at must be a datetime, got {self.at!r}")
        if self.priority is not UNSET:
            _priority(self.priority)
        if self.max_tries is not UNSET:
            _count("max_tries", self.max_tries)
        if self.max_deliveries not in (None, UNSET):
            _count("max_deliveries", self.max_deliveries)
        if self.timeout not in (None, UNSET):
            # below a millisecond a timeout would round to 0, which means "none"
            _seconds("timeout", self.timeout, minimum=0.001, inclusive=True)
        if self.result_ttl not in (None, UNSET):
            _seconds("result_ttl", self.result_ttl, minimum=0.001, inclusive=True)
        self.unique()  # checks the unique options
        if self.concurrency_key is not UNSET:
            object.__setattr__(self, "concurrency_key", check_concurrency_key(self.concurrency_key))

    def given(self) -> dict[str, Any]:
        """The fields that are set (not UNSET), by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not UNSET}

    def merged(self, later: EnqueueOptions) -> EnqueueOptions:
        """These options with every field ``later`` sets replacing ours. A
        later ``delay`` replaces an earlier ``at`` and the other way round."""
        changes = later.given()
        if "delay" in changes and changes["delay"] is not None:
            changes.setdefault("at", None)
        if "at" in changes and changes["at"] is not None:
            changes.setdefault("delay", None)
        return dataclasses.replace(self, **changes) if changes else self

    def record_fields(self) -> dict[str, str | int]:
        """Per-job overrides stored in the job record; what is absent takes
        the worker's task default. ``timeout=None`` stores 0, "no timeout"."""
        timeout = self.timeout
        return override_fields(
            max_tries=self.max_tries if isinstance(self.max_tries, int) else None,
            timeout_ms=None if timeout is UNSET else 0 if timeout is None else _ms(timeout),
            result_ttl_ms=_ms(self.result_ttl) if isinstance(self.result_ttl, int | float)
            else None,
            max_deliveries=self.max_deliveries if isinstance(self.max_deliveries, int) else None,
        )

    def unique(self) -> UniqueKey | None:
        """The job's unique key, or None (no ``unique_key``)."""
        if self.unique_key in (None, UNSET):
            if self.unique_mode is not UNSET or self.unique_ttl is not UNSET:
                raise ConfigurationError("unique_mode and unique_ttl need a unique_key")
            return None
        return UniqueKey(
            check_unique_key(self.unique_key),
            self.unique_mode if isinstance(self.unique_mode, str) else "unique",
            self.unique_ttl if isinstance(self.unique_ttl, int | float) else DEFAULT_UNIQUE_TTL_S)

    def delay_ms(self) -> int:
        """The delay in whole milliseconds (0: none)."""
        return round(self.delay * 1000) if isinstance(self.delay, int | float) else 0

    def at_ms(self) -> int | None:
        """The due time in epoch milliseconds, or None. A naive datetime is
        this process's local time (as ``datetime.now()`` gives it)."""
        if not isinstance(self.at, datetime):
            return None
        return int(self.at.timestamp() * 1000)
