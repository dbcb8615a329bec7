"""The stored job record: its field codes, how a new record's fields are
built, how a stored record is read back, and the error entries it keeps.

This is the only Python module that knows the short field codes (``st``,
``att``, ``mt``...); the Lua scripts are the other side of the same format
(see ``keys.py`` for the key layout). Everything else asks this module.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from .errors import MalformedJobRecord


class Field(enum.StrEnum):
    """Field codes of the job record hash (``<q>job:<id>``)."""

    TASK = "t"
    ARGS = "a"
    """arguments JSON"""
    STATUS = "st"
    ENQUEUED = "et"
    """enqueued at (server ms)"""
    PRIORITY = "p"
    ATTEMPT = "att"
    DELIVERIES = "dlv"
    """delivery count"""
    TOKEN = "tk"
    """the current lease's fencing token: max(previous + 1, server ms) at each
    claim, so it grows even across writes Redis lost"""
    MAX_TRIES = "mt"
    MAX_DELIVERIES = "md"
    TIMEOUT = "to"
    """ms; 0 = no timeout"""
    RESULT_TTL = "rt"
    DUE = "due"
    STARTED = "ts"
    FINISHED = "tf"
    WORKER = "w"
    RESULT = "r"
    ERROR = "e"
    """the last error entry (JSON)"""
    ERRORS = "eh"
    """every attempt's error entry (JSON list), as written before 0.2"""
    ERROR_COUNT = "ne"
    """error entries written so far; entry n is field ``e:<n>`` (last 20 kept)"""
    LEASE_EXPIRIES = "lx"
    CANCEL = "cx"
    """cancellation requested: the reason"""
    PROGRESS = "pg"
    LAST_SETTLE = "lt"
    """token + kind of the last applied settle (a repeated settle is a no-op)"""
    WORKFLOW = "wf"
    WORKFLOW_INDEX = "wi"
    TRACE = "tc"
    """the producer's trace context, ``traceparent`` then, after one space, any
    ``tracestate`` (W3C); written only by an app with tracing on
    (:mod:`aioqueue.otel`), so a record without tracing has no such field"""


TRACE_CONTEXT_MAX = 1024
"""Longest stored trace context (``overrides.lua`` refuses a longer one)."""


def trace_field(traceparent: str, tracestate: str = "") -> str:
    """The stored form of a W3C trace context (``Field.TRACE``)."""
    return f"{traceparent} {tracestate}" if tracestate else traceparent


def parse_trace_field(raw: str) -> tuple[str, str]:
    """``(traceparent, tracestate)`` of a stored trace context ('' = none)."""
    traceparent, _, tracestate = raw.partition(" ")
    return traceparent, tracestate


class WorkflowField(enum.StrEnum):
    """Field codes of the workflow record hash (``<q>wf:<id>``)."""

    KIND = "kind"
    STATUS = "st"
    SIZE = "n"
    LEFT = "left"
    CONTINUE_ON_ERROR = "coe"
    CALLBACK = "cb"
    RESULT = "r"
    ERROR = "e"
    ENQUEUED = "et"


WORKFLOW_RUNNING = "running"
"""A workflow's status while it has not ended."""

OVERRIDE_FIELDS = (Field.MAX_TRIES, Field.MAX_DELIVERIES, Field.TIMEOUT, Field.RESULT_TTL)
"""Per-job overrides of the task's defaults (absent = the task's default)."""

OUTCOME_FIELDS = (Field.STATUS, Field.RESULT, Field.ERROR, Field.ATTEMPT)
"""What ``Job.result()`` reads."""


class JobStatus(enum.StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    """Waiting to run."""
    SCHEDULED = "scheduled"
    """Delayed, or waiting for its next retry."""
    ACTIVE = "active"
    """Leased by a worker and running."""
    SUCCEEDED = "succeeded"
    """Finished with a result."""
    FAILED = "failed"
    """Failed for good: dead-lettered with its error."""
    CANCELLED = "cancelled"
    """Cancelled before it finished."""
    UNKNOWN = "unknown"
    """No record: never enqueued, or its record expired after its TTL."""

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
"""A job in one of these has ended (its record expires after its TTL)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Progress reported by a running task with ``ctx.progress()``."""

    fraction: float
    message: str


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A snapshot of a job record."""

    id: str
    queue: str
    task: str
    status: JobStatus
    attempt: int
    deliveries: int
    priority: int
    enqueued_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    worker: str | None
    error: dict[str, Any] | None
    errors: list[dict[str, Any]]
    """Every failed attempt's error (type, message, traceback, attempt)."""
    progress: Progress | None
    task_args: Any
    """The stored arguments (JSON)."""


# -- building -----------------------------------------------------------------

def override_fields(
    *, max_tries: int | None = None, timeout_ms: int | None = None,
    result_ttl_ms: int | None = None, max_deliveries: int | None = None,
) -> dict[str, str | int]:
    """The per-job overrides stored in a new record (None = not stored: the
    task's default applies; ``timeout_ms=0`` stores "no timeout")."""
    fields: dict[str, str | int] = {}
    for name, value in ((Field.MAX_TRIES, max_tries), (Field.TIMEOUT, timeout_ms),
                        (Field.RESULT_TTL, result_ttl_ms),
                        (Field.MAX_DELIVERIES, max_deliveries)):
        if value is not None:
            fields[name.value] = value
    return fields


def overrides_wire(fields: dict[str, str | int], separator: str = "\x1f") -> str:
    """Overrides as the scripts take them: name, value, ... joined by
    ``separator`` (``\x1e`` inside a workflow step's spec, whose parts are
    joined by ``\x1f``)."""
    return separator.join(f"{name}{separator}{value}" for name, value in fields.items())


def copied_overrides(rec: dict[str, str]) -> dict[str, str | int]:
    """The overrides of a stored record, for a copy of the job."""
    return {name.value: rec[name] for name in OVERRIDE_FIELDS if name in rec}


def cjson_safe(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates (``os.fsdecode`` of a
    non-UTF-8 file name, say) become visible ``\\udcxx`` escapes. Redis's
    cjson refuses them (and JSON escapes of them), so a script decoding
    such text would fail."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def error_entry(error_type: str, message: str, traceback: str, attempt: int) -> str:
    """One error entry (JSON), as stored in ``e`` and in the history."""
    return json.dumps({"type": cjson_safe(error_type), "message": cjson_safe(message),
                       "traceback": cjson_safe(traceback), "attempt": attempt})


@dataclass(frozen=True, slots=True)
class MemberJob:
    """A workflow member to create now: its id, task, arguments JSON, its
    task's priority and per-job overrides (wire form, see ``overrides_wire``)."""

    id: str
    task: str
    args: str
    priority: int
    overrides: str

    def entries(self) -> tuple[str, str, str, int, str]:
        return (self.id, self.task, self.args, self.priority, self.overrides)


# -- reading ------------------------------------------------------------------

def _int_or_none(value: str | None) -> int | None:
    return int(value) if value else None


def parse_progress(raw: str | None) -> Progress | None:
    if not raw:
        return None
    data = json.loads(raw)
    return Progress(float(data.get("fraction", 0.0)), str(data.get("message", "")))


def json_or_text(raw: str | None) -> Any:
    """Stored JSON, or the raw text when it is not JSON (a corrupt record must
    still be listable, e.g. among dead letters)."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_error(raw: str | None) -> dict[str, Any] | None:
    """An error entry; text that is not a JSON object is shown as a
    ``MalformedError`` carrying that text."""
    value = json_or_text(raw)
    if value is None or isinstance(value, dict):
        return value
    return {"type": "MalformedError", "message": str(value), "traceback": ""}


ERROR_ENTRY_PREFIX = "e:"
"""History entry n of a record is the field ``e:<n>``."""


def parse_errors(rec: dict[str, str]) -> list[dict[str, Any]]:
    """The error entries of the record's history, oldest first."""
    legacy = json_or_text(rec.get(Field.ERRORS)) or []
    numbered = sorted((int(name[2:]), value) for name, value in rec.items()
                      if name.startswith(ERROR_ENTRY_PREFIX) and name[2:].isdigit())
    entries = [*(legacy if isinstance(legacy, list) else []),
               *(parse_error(value) for _, value in numbered)]
    return [e for e in entries if isinstance(e, dict)]


def parse_status(raw: str | None) -> JobStatus:
    return JobStatus(raw) if raw else JobStatus.UNKNOWN


def parse_info(job_id: str, queue: str, rec: dict[str, str]) -> JobInfo:
    """Build a JobInfo from a raw record; MalformedJobRecord if its
    bookkeeping fields are unreadable (stored arguments and errors that are
    not JSON are shown as text)."""
    try:
        return JobInfo(
            id=job_id,
            queue=queue,
            task=rec.get(Field.TASK, ""),
            status=JobStatus(rec.get(Field.STATUS, "unknown")),
            attempt=int(rec.get(Field.ATTEMPT, "1")),
            deliveries=int(rec.get(Field.DELIVERIES, "0")),
            priority=int(rec.get(Field.PRIORITY, "0")),
            enqueued_ms=_int_or_none(rec.get(Field.ENQUEUED)),
            started_ms=_int_or_none(rec.get(Field.STARTED)),
            finished_ms=_int_or_none(rec.get(Field.FINISHED)),
            worker=rec.get(Field.WORKER),
            error=parse_error(rec.get(Field.ERROR)),
            errors=parse_errors(rec),
            progress=parse_progress(rec.get(Field.PROGRESS)),
            task_args=json_or_text(rec.get(Field.ARGS)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedJobRecord(f"job {job_id}: unreadable record: {exc}") from exc
