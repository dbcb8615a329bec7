"""OpenTelemetry tracing of jobs (``pip install 'aioqueue[otel]'``).

Off unless asked for: nothing in aioqueue imports this module, so an app that
does not call :func:`instrument` never imports OpenTelemetry, stores no trace
context and pays one ``is None`` test per enqueue and per attempt.

::

    import aioqueue.otel

    aioqueue.otel.instrument(app)  # the global tracer provider, or tracer_provider=...

Then, in the producer and in the worker (each process calls it):

* every ``enqueue`` (and ``enqueue_with``) is a ``send <queue>`` span of kind
  PRODUCER, and every ``enqueue_many`` call one such span for all its jobs
  (``messaging.batch.message_count``); its W3C context (``traceparent``,
  ``tracestate``) is stored in each job record (field ``tc``, only then);
* every attempt a worker runs is a ``process <queue>`` span of kind CONSUMER,
  current while the task runs (spans the task opens are its children),
  **linked** to the producer span. By default each attempt starts a new trace
  (a delayed or retried job would otherwise make a trace hours long);
  ``consumer_parent=True`` makes it a child of the producer span instead (one
  trace per job: fine for jobs that run at once).

Attributes follow the OpenTelemetry messaging semantic conventions (status
"development": the names below are the ones of semantic conventions 1.27+):
``messaging.system`` (``aioqueue``), ``messaging.operation.type`` and
``messaging.operation.name`` (``send`` / ``process``),
``messaging.destination.name`` (the queue), ``messaging.message.id`` (the job
id), ``messaging.client.id`` (the worker id, consumer side),
``messaging.message.body.size``, ``error.type``; and aioqueue's own
``messaging.aioqueue.task.name``, ``messaging.aioqueue.attempt`` and
``messaging.aioqueue.outcome`` (succeeded, retried, failed, cancelled,
requeued). A failed attempt (retried or dead-lettered) sets the span status
to ERROR and records an ``exception`` event with the stored error's type,
message and traceback.

Schedule ticks, workflow members (created by the workflow scripts) and the
eager test mode are not traced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from . import __version__
from .app import App
from .broker import ClaimedJob, Settlement
from .keys import logical_queue
from .record import TRACE_CONTEXT_MAX, parse_trace_field, trace_field

__all__ = ["OUTCOMES", "OtelTracer", "instrument", "uninstrument"]

SYSTEM = "aioqueue"
OUTCOMES = {"ok": "succeeded", "retry": "retried", "dead": "failed", "cancel": "cancelled",
            "requeue": "requeued"}
"""Settlement kind -> ``messaging.aioqueue.outcome``."""
_FAILED = frozenset({"retry", "dead"})
_W3C = TraceContextTextMapPropagator()


def _stored_context(carrier: dict[str, str]) -> str:
    """The record's form of an injected context; tracestate is dropped when
    the whole would be too long or not printable ASCII (the script refuses it)."""
    traceparent = carrier.get("traceparent", "")
    if not traceparent:
        return ""
    stored = trace_field(traceparent, carrier.get("tracestate", ""))
    if len(stored) > TRACE_CONTEXT_MAX or not (stored.isascii() and stored.isprintable()):
        return traceparent
    return stored


class OtelTracer:
    """aioqueue's :class:`~aioqueue.backend.JobTracer` on an OpenTelemetry tracer."""

    def __init__(self, tracer: trace.Tracer, *, consumer_parent: bool = False) -> None:
        self.tracer = tracer
        self.consumer_parent = consumer_parent

    @contextmanager
    def sending(self, queue: str, task: str, job_ids: Sequence[str]) -> Iterator[str]:
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": queue,
            "messaging.aioqueue.task.name": task,
        }
        if len(job_ids) == 1:
            attributes["messaging.message.id"] = job_ids[0]
        else:
            attributes["messaging.batch.message_count"] = len(job_ids)
        with self.tracer.start_as_current_span(f"send {queue}", kind=SpanKind.PRODUCER,
                                               attributes=attributes):
            carrier: dict[str, str] = {}
            _W3C.inject(carrier)
            yield _stored_context(carrier)

    @contextmanager
    def processing(self, job: ClaimedJob, worker_id: str
                   ) -> Iterator[Callable[[Settlement], None]]:
        links: list[Link] = []
        parent = Context()  # a new trace, whatever the worker's own context
        if job.trace:
            traceparent, tracestate = parse_trace_field(job.trace)
            carrier = {"traceparent": traceparent}
            if tracestate:
                carrier["tracestate"] = tracestate
            remote = _W3C.extract(carrier, context=Context())
            producer = trace.get_current_span(remote).get_span_context()
            if producer.is_valid:
                links.append(Link(producer))
                if self.consumer_parent:
                    parent = remote
        queue = logical_queue(job.queue)  # a sharded queue's name, not its shard's
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": job.id,
            "messaging.client.id": worker_id,
            "messaging.message.body.size": len(job.args.encode("utf-8", "replace")),
            "messaging.aioqueue.task.name": job.task,
            "messaging.aioqueue.attempt": job.attempt,
        }
        with self.tracer.start_as_current_span(
                f"process {queue}", context=parent, kind=SpanKind.CONSUMER,
                attributes=attributes, links=links) as span:
            yield lambda settlement: _record_outcome(span, settlement)


def _record_outcome(span: Span, settlement: Settlement) -> None:
    span.set_attribute("messaging.aioqueue.outcome",
                       OUTCOMES.get(settlement.kind, settlement.kind))
    if settlement.kind not in _FAILED:
        return
    try:
        entry: Any = json.loads(settlement.payload)
    except ValueError:
        entry = {}
    if not isinstance(entry, dict):
        entry = {}
    error_type = str(entry.get("type") or "Error")
    message = str(entry.get("message") or "")
    span.set_attribute("error.type", error_type)
    span.add_event("exception", {"exception.type": error_type, "exception.message": message,
                                 "exception.stacktrace": str(entry.get("traceback") or "")})
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"[:1024]))


def instrument(app: App, *, tracer_provider: trace.TracerProvider | None = None,
               consumer_parent: bool = False) -> OtelTracer:
    """Trace ``app``'s enqueues and the attempts its workers run (see the module).

    :param tracer_provider: where spans go (default: OpenTelemetry's global one).
    :param consumer_parent: make each attempt's span a child of the enqueue
        span (one trace per job) instead of the root of a new trace linked to it.
    """
    tracer = OtelTracer(trace.get_tracer("aioqueue", __version__,
                                         tracer_provider=tracer_provider),
                        consumer_parent=consumer_parent)
    app.backend.tracer = tracer
    return tracer


def uninstrument(app: App) -> None:
    """Stop tracing ``app`` (nothing more is stored or recorded)."""
    app.backend.tracer = None
