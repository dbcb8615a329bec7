"""Structured logs: a JSON formatter (one object per line), the job fields
every record logged while a job runs carries, and a filter that keeps a
repeated warning from flooding the log during an outage.

``aioqueue worker APP --log-format json`` turns them on; in your own
process: ``aioqueue.logs.configure(json_format=True)``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_JOB: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "aioqueue_job_fields", default=None)

# attributes every LogRecord has: anything else was passed as extra=
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
MAX_TEXT = 1024


def bind_job(**fields: Any) -> None:
    """Attach job fields (job_id, task, queue, attempt...) to every record
    logged from the current task from now on; each job runs in its own task,
    so they never leak into another job's records."""
    _JOB.set({k: v for k, v in fields.items() if v is not None})


bind_job_fields: Callable[[dict[str, Any]], object] = _JOB.set
"""As :func:`bind_job` with the fields ready in a dict without None values
(the worker's call for every job: no keyword packing, no filtering)."""


def job_fields() -> dict[str, Any]:
    return dict(_JOB.get() or {})


class JobFieldsFilter(logging.Filter):
    """Copies the bound job fields onto each record (for any formatter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_JOB.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...job fields, ...extra}`` on
    one line; long texts are cut at 1 KiB."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage()[:MAX_TEXT],
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool) or value is None \
                    else str(value)[:MAX_TEXT]
        if record.exc_info:
            entry["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["traceback"] = self.formatException(record.exc_info)[-4 * MAX_TEXT:]
        return json.dumps(entry, ensure_ascii=False)


class RepeatFilter(logging.Filter):
    """Lets the first of a run of identical warnings through (same logger,
    same message template) and drops the repeats for ``window_s``; the next
    one let through says how many were dropped."""

    def __init__(self, window_s: float = 10.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.levelno >= logging.CRITICAL:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            self._last[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} ({seen[1]} similar message(s) suppressed)"
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = (now, 0)
        return True


def configure(level: str | int = "INFO", *, json_format: bool = False,
              repeat_window_s: float = 10.0) -> logging.Handler | None:
    """Log to stderr: plain text or JSON lines, with job fields and repeated
    warnings folded. Like ``logging.basicConfig`` it leaves a root logger that
    already has other handlers alone; called again, it replaces its own
    handler. Returns the handler in use (None if it left the root alone)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_aioqueue", False)]:
        root.removeHandler(old)
    if root.handlers:
        return None
    handler = logging.StreamHandler()
    handler._aioqueue = True  # type: ignore[attr-defined]
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(JobFieldsFilter())
    handler.addFilter(RepeatFilter(repeat_window_s))
    root.addHandler(handler)
    root.setLevel(level)
    return handler
