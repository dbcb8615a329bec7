"""Retry decisions: the task's ``RetryPolicy`` and the one function that turns
a failed attempt into "retry after N seconds" or "fail for good".

Task code and user policies are not trusted here: a ``Retry(delay=nan)``, a
policy that returns ``inf`` or raises, fails that job with a clear reason and
never reaches the worker's own code as an exception.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigurationError, Retry

MAX_RETRY_DELAY_S = 10 * 365 * 86_400.0
"""The longest wait before a retry (10 years, as for ``delay=``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How long to wait before the next attempt of a failed job.

    The n-th retry waits ``min(backoff_s * factor**(n-1), backoff_max_s)``
    seconds; with ``jitter`` the wait is drawn uniformly from
    ``[wait/2, wait]`` so that jobs failing together do not retry together.
    """

    backoff_s: float = 1.0
    factor: float = 2.0
    backoff_max_s: float = 300.0
    jitter: bool = True
    custom: Callable[[int, BaseException | None], float] | None = None
    """``custom(retry_number, exception) -> seconds`` replaces the formula."""

    @classmethod
    def fixed(cls, seconds: float, *, jitter: bool = False) -> RetryPolicy:
        """The same wait before every retry."""
        return cls(backoff_s=seconds, factor=1.0, backoff_max_s=seconds, jitter=jitter)

    @classmethod
    def exponential(cls, first_s: float = 1.0, *, factor: float = 2.0, cap_s: float = 300.0,
                    jitter: bool = True) -> RetryPolicy:
        """``first_s``, then times ``factor`` each retry, capped at ``cap_s``."""
        return cls(backoff_s=first_s, factor=factor, backoff_max_s=cap_s, jitter=jitter)

    def __post_init__(self) -> None:
        finite = all(isinstance(v, int | float) and math.isfinite(v)
                     for v in (self.backoff_s, self.backoff_max_s, self.factor))
        if not finite or self.backoff_s < 0 or self.backoff_max_s < 0 or self.factor < 1:
            raise ConfigurationError(
                "RetryPolicy needs finite backoff_s >= 0, backoff_max_s >= 0, factor >= 1")

    def delay_for(self, retry_number: int, rng: random.Random | None = None,
                  error: BaseException | None = None) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based)."""
        if self.custom is not None:
            return max(0.0, float(self.custom(retry_number, error)))
        # the exponent is bounded: factor**n overflows a float long before 1e4
        growth = self.factor ** min(max(0, retry_number - 1), 1024)
        wait = min(self.backoff_s * growth, self.backoff_max_s)
        if self.jitter and wait > 0:
            wait = (rng or random).uniform(wait / 2, wait)
        return wait


class InvalidRetryDelay(ValueError):
    """A ``Retry(delay=...)`` that is not a number of seconds a job can wait."""


class RetryPolicyError(RuntimeError):
    """The task's retry policy raised or returned no usable number of seconds."""


def checked_delay(value: object) -> float:
    """``value`` as a wait in seconds, or :class:`ValueError` saying why not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number of seconds")
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_RETRY_DELAY_S:
        raise ValueError(f"{value!r} is not a finite number of seconds in "
                         f"[0, {MAX_RETRY_DELAY_S:g}]")
    return seconds


def requested_delay(delay: object) -> float | None:
    """The delay of a ``Retry`` the task raised (None: the policy decides).

    :raises InvalidRetryDelay: nan, inf, negative, over 10 years, not a number.
    """
    if delay is None:
        return None
    try:
        return checked_delay(delay)
    except ValueError as exc:
        raise InvalidRetryDelay(f"Retry(delay={delay!r}): {exc}") from None


def policy_delay(policy: RetryPolicy, retry_number: int, error: BaseException | None) -> float:
    """The policy's wait before retry ``retry_number``.

    :raises RetryPolicyError: the policy raised, or returned no usable wait.
    """
    try:
        return checked_delay(policy.delay_for(retry_number, error=error))
    except Exception as exc:
        raise RetryPolicyError(f"retry policy failed ({type(exc).__name__}: "
                               f"{safe_text(exc)})") from None


def safe_text(exc: BaseException) -> str:
    """``str(exc)``, even when the exception's ``__str__`` raises."""
    try:
        return str(exc)
    except BaseException as inner:  # noqa: B036 - str() cannot be cancelled: no await
        return f"<str() failed: {type(inner).__name__}>"


def retry_delay(policy: RetryPolicy, retry_number: int, error: BaseException) -> float:
    """The wait before retry ``retry_number`` after ``error``: the delay of a
    ``Retry`` the task raised, else the policy's.

    :raises InvalidRetryDelay: the task asked for an unusable delay.
    :raises RetryPolicyError: the policy failed.
    """
    delay = requested_delay(getattr(error, "delay", None)) if isinstance(error, Retry) else None
    return delay if delay is not None else policy_delay(policy, retry_number, error)
