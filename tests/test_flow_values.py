"""Rate limit values: parsing, the stored form and bad input (#13 item 1)."""

from __future__ import annotations

import math

import pytest

import aioqueue
from aioqueue.flow import RateLimit, RateLimited


@pytest.mark.parametrize(("text", "count", "per_s"), [
    ("10/s", 10, 1.0), ("600/m", 600, 60.0), ("1000/h", 1000, 3600.0), ("5/2s", 5, 2.0),
    (" 3 / 0.5s ", 3, 0.5), ("7/min", 7, 60.0),
])
def test_rate_limit_text_forms(text: str, count: int, per_s: float) -> None:
    limit = RateLimit.parse(text)
    assert (limit.count, limit.per_s, limit.burst) == (count, per_s, 1)
    assert RateLimit.decode(limit.encode()) == limit


@pytest.mark.parametrize("text", ["", "10", "10/x", "0/s", "-1/s", "1.5/s", "10/0s", "s/10",
                                  "10/s/s", "99999999999/s"])
def test_rate_limit_refuses_bad_text_with_a_typed_error(text: str) -> None:
    with pytest.raises(aioqueue.ConfigurationError):
        RateLimit.parse(text)


@pytest.mark.parametrize("kwargs", [
    {"count": 0}, {"count": True}, {"count": 1, "burst": 0}, {"count": 1, "per_s": math.nan},
    {"count": 1, "per_s": math.inf}, {"count": 1, "per_s": 0.0001},
])
def test_rate_limit_refuses_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(aioqueue.ConfigurationError):
        RateLimit(**kwargs)  # type: ignore[arg-type]


def test_stored_form_that_is_not_a_limit_reads_as_none() -> None:
    assert RateLimit.decode("off") is None
    assert RateLimit.decode("0 1000 1") is None
    assert RateLimit.decode("1 2") is None


@pytest.mark.parametrize("after", [math.nan, math.inf, -1, "1", True])
def test_rate_limited_refuses_a_retry_after_that_is_not_seconds(after: object) -> None:
    with pytest.raises(aioqueue.ConfigurationError):
        RateLimited(retry_after=after)  # type: ignore[arg-type]


def test_rate_limited_is_a_retry_for_workers_that_do_not_know_it() -> None:
    signal = RateLimited(retry_after=2.5)
    assert isinstance(signal, aioqueue.Retry) and signal.delay == 2.5
    assert signal.retry_after_ms == 2500
