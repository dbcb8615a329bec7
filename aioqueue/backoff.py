"""The one reconnect/retry backoff every role uses."""

from __future__ import annotations

import random


def full_jitter(failures: int, *, base: float, cap: float) -> float:
    """Capped exponential backoff with full jitter: a wait drawn from
    ``[0, min(cap, base * 2**failures)]``, so that many clients retrying after
    the same outage (a Redis restart) do not come back in step."""
    return random.uniform(0, min(cap, base * 2 ** min(failures, 32)))
