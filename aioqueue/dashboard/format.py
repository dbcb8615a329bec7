"""Formatting helpers of the dashboard's templates."""

from __future__ import annotations

from datetime import UTC, datetime


def when(ms: int | None) -> str:
    """Epoch ms as UTC date and time; '-' for none."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
