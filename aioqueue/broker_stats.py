"""Per-minute throughput and latency of a queue, as the settle and reap
scripts count them (``lua/includes/minute_stats.lua``). Part of the broker
layer. Reading an hour costs one pipelined round trip of 60 ``HGETALL``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .broker_admin import Lane, as_mapping
from .broker_listing import execute_spread
from .connection import translate_errors
from .keys import QueueKeys, check_name, shard_names

COUNTERS = ("succeeded", "failed", "retried", "cancelled", "expired")
WINDOW_MINUTES = 24 * 60
"""How far back the counters reach (their keys expire after 25 h)."""


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """One minute of one queue."""

    minute_ms: int
    """Start of the minute (epoch ms, server time)."""
    counts: dict[str, int]
    run_n: int
    run_mean_s: float | None
    run_max_s: float | None
    wait_n: int
    wait_mean_s: float | None
    wait_max_s: float | None

    @property
    def finished(self) -> int:
        return self.counts.get("succeeded", 0) + self.counts.get("failed", 0)


def _minute(start_ms: int, raw: dict[str, str]) -> MinuteStats:
    def num(name: str) -> int:
        try:
            return int(raw.get(name, "0"))
        except ValueError:
            return 0

    run_n, wait_n = num("run_n"), num("wait_n")
    return MinuteStats(
        minute_ms=start_ms, counts={c: num(c) for c in COUNTERS},
        run_n=run_n, run_mean_s=num("run_ms") / run_n / 1000 if run_n else None,
        run_max_s=num("run_max") / 1000 if run_n else None,
        wait_n=wait_n, wait_mean_s=num("wait_ms") / wait_n / 1000 if wait_n else None,
        wait_max_s=num("wait_max") / 1000 if wait_n else None)


def _added(parts: Sequence[dict[str, str]]) -> dict[str, str]:
    """One minute of a sharded queue: its shards' counts and sums added,
    the largest of their maxima."""
    total: dict[str, int] = {}
    for part in parts:
        for name, value in part.items():
            try:
                number = int(value)
            except ValueError:
                continue
            seen = total.get(name, 0)
            total[name] = max(seen, number) if name.endswith("_max") else seen + number
    return {name: str(value) for name, value in total.items()}


async def recent_minutes(lane: Lane, prefix: str, queues: Sequence[str], *,
                         minutes: int = 60, shards: Mapping[str, int] | None = None
                         ) -> dict[str, list[MinuteStats]]:
    """The last ``minutes`` minutes (oldest first, the current one last) of
    each queue; minutes without activity are all zero. ``shards``: the
    shard counts of sharded queues (``broker.shards``), whose shards' minutes
    are added up."""
    if not 1 <= minutes <= WINDOW_MINUTES:
        raise ValueError(f"minutes must be 1..{WINDOW_MINUTES}")
    counts = dict(shards or {})
    groups = [shard_names(counts, check_name("queue", q)) for q in queues]
    keys = [QueueKeys(prefix, shard) for group in groups for shard in group]
    with translate_errors(prefix):
        sec, _ = await lane.execute("TIME")
        now_minute = int(sec) // 60
        span = range(now_minute - minutes + 1, now_minute + 1)
        # queues (shards) are slots: on a cluster, one pipeline per primary
        replies = await execute_spread(
            lane, [("HGETALL", f"{k.base}m:{m}") for k in keys for m in span]) if keys else []
    raws = [{} if isinstance(r, Exception) else as_mapping(r) for r in replies]
    out: dict[str, list[MinuteStats]] = {}
    pos = 0
    for queue, group in zip(queues, groups, strict=True):
        rows = [raws[(pos + j) * minutes:(pos + j + 1) * minutes] for j in range(len(group))]
        pos += len(group)
        out[queue] = [_minute(m * 60_000, rows[0][t] if len(rows) == 1
                              else _added([r[t] for r in rows]))
                      for t, m in enumerate(span)]
    return out
