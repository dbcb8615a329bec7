"""The job record module: the one place that builds and reads stored fields."""

from __future__ import annotations

import json

import pytest

import aioqueue
from aioqueue.errors import MalformedJobRecord
from aioqueue.record import (
    Field,
    JobStatus,
    copied_overrides,
    error_entry,
    override_fields,
    parse_info,
)


def test_overrides_store_only_what_was_given() -> None:
    assert override_fields() == {}
    assert override_fields(max_tries=3, timeout_ms=0, result_ttl_ms=5, max_deliveries=2) == {
        "mt": 3, "to": 0, "rt": 5, "md": 2}


def test_copied_overrides_keep_the_per_job_settings_only() -> None:
    rec = {"t": "add", "a": "{}", "st": "failed", "mt": "4", "rt": "9", "att": "4"}
    assert copied_overrides(rec) == {"mt": "4", "rt": "9"}


def test_parse_info_reads_every_bookkeeping_field() -> None:
    err = error_entry("ValueError", "bad", "tb", 2)
    rec = {Field.TASK: "add", Field.ARGS: '{"args": [1]}', Field.STATUS: "failed",
           Field.ATTEMPT: "2", Field.DELIVERIES: "3", Field.PRIORITY: "5",
           Field.ENQUEUED: "10", Field.STARTED: "11", Field.FINISHED: "12",
           Field.WORKER: "w1", Field.ERROR: err, Field.ERRORS: f"[{err}]",
           Field.PROGRESS: '{"fraction": 0.5, "message": "half"}'}
    info = parse_info("j", "q", {str(k): v for k, v in rec.items()})
    assert info.status is JobStatus.FAILED
    assert (info.attempt, info.deliveries, info.priority) == (2, 3, 5)
    assert (info.enqueued_ms, info.started_ms, info.finished_ms) == (10, 11, 12)
    assert info.error == json.loads(err) and info.errors == [json.loads(err)]
    assert info.progress == aioqueue.Progress(0.5, "half")
    assert info.task_args == {"args": [1]}


def test_parse_info_shows_corrupt_text_and_refuses_corrupt_bookkeeping() -> None:
    info = parse_info("j", "q", {"t": "add", "a": "{not json", "st": "queued", "e": "oops"})
    assert info.task_args == "{not json"
    assert info.error == {"type": "MalformedError", "message": "oops", "traceback": ""}
    with pytest.raises(MalformedJobRecord):
        parse_info("j", "q", {"t": "add", "st": "queued", "att": "x"})


def test_error_entry_is_valid_utf8_even_with_lone_surrogates() -> None:
    entry = error_entry("OSError", "cannot open caf\udce9.csv", "", 1)
    entry.encode("utf-8")  # would raise on a lone surrogate
    assert "\\\\udce9" in entry
    assert json.loads(entry)["message"] == "cannot open caf\\udce9.csv"
