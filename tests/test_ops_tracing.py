"""OpenTelemetry tracing (issue 11 item 6): a producer span per enqueue, its
context stored in the job, a consumer span per attempt linked to it; checked
with the SDK's in-memory exporter against a real server and worker."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.span import NonRecordingSpan, SpanContext, TraceFlags, TraceState

import aioqueue
import aioqueue.otel
from aioqueue.record import Field

from .conftest import REPO, running


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.clear()


def _provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


def _traceparent(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


async def test_a_retried_job_has_one_producer_span_and_a_linked_consumer_span_per_attempt(
        make_app: Callable[..., aioqueue.App], queue_name: str,
        exporter: InMemorySpanExporter) -> None:
    app = make_app(queue=queue_name)
    aioqueue.otel.instrument(app, tracer_provider=_provider(exporter))

    @app.task(max_tries=3)
    async def flaky(ctx: aioqueue.JobContext, x: int) -> int:
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return x * 2

    async with app, running(app) as supervisor:
        job = await flaky.enqueue(21)
        assert await job.result(timeout=10) == 42
        (stored,) = await app.broker.job_fields(queue_name, job.id, Field.TRACE)

    (send,) = _kind(exporter, SpanKind.PRODUCER)
    assert send.name == f"send {queue_name}"
    assert dict(send.attributes or {}) == {
        "messaging.system": "aioqueue", "messaging.operation.type": "send",
        "messaging.operation.name": "send", "messaging.destination.name": queue_name,
        "messaging.message.id": job.id, "messaging.aioqueue.task.name": flaky.name}
    # the record carries the producer span's W3C context
    assert stored == _traceparent(send)

    attempts = sorted(_kind(exporter, SpanKind.CONSUMER),
                      key=lambda s: (s.attributes or {})["messaging.aioqueue.attempt"])
    assert len(attempts) == 2
    producer = send.get_span_context()
    for number, span in enumerate(attempts, start=1):
        attrs = dict(span.attributes or {})
        assert span.name == f"process {queue_name}"
        assert attrs["messaging.system"] == "aioqueue"
        assert attrs["messaging.operation.type"] == "process"
        assert attrs["messaging.destination.name"] == queue_name
        assert attrs["messaging.message.id"] == job.id
        assert attrs["messaging.client.id"] == supervisor.worker_id
        assert attrs["messaging.aioqueue.task.name"] == flaky.name
        assert attrs["messaging.aioqueue.attempt"] == number
        # linked to the enqueue, each attempt its own trace (the default)
        assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
            (producer.trace_id, producer.span_id)]
        assert span.parent is None
        assert span.get_span_context().trace_id != producer.trace_id
    first, second = attempts
    assert (first.attributes or {})["messaging.aioqueue.outcome"] == "retried"
    assert first.status.status_code is StatusCode.ERROR
    assert (first.attributes or {})["error.type"] == "ValueError"
    (event,) = [e for e in first.events if e.name == "exception"]
    assert (event.attributes or {})["exception.message"] == "first attempt fails"
    assert "raise ValueError" in str((event.attributes or {})["exception.stacktrace"])
    assert (second.attributes or {})["messaging.aioqueue.outcome"] == "succeeded"
    assert second.status.status_code is StatusCode.UNSET
    assert "error.type" not in (second.attributes or {})


async def test_a_dead_lettered_attempt_records_its_error(
        make_app: Callable[..., aioqueue.App], queue_name: str,
        exporter: InMemorySpanExporter) -> None:
    app = make_app(queue=queue_name)
    aioqueue.otel.instrument(app, tracer_provider=_provider(exporter))

    @app.task(max_tries=1)
    async def broken() -> None:
        raise KeyError("missing")

    async with app, running(app):
        job = await broken.enqueue()
        with pytest.raises(aioqueue.JobFailed):
            await job.result(timeout=10)
    (span,) = _kind(exporter, SpanKind.CONSUMER)
    attrs = dict(span.attributes or {})
    assert attrs["messaging.aioqueue.outcome"] == "failed"
    assert attrs["error.type"] == "KeyError"
    assert span.status.status_code is StatusCode.ERROR
    assert "KeyError" in (span.status.description or "")


async def test_consumer_parent_puts_each_attempt_in_the_producers_trace(
        make_app: Callable[..., aioqueue.App], queue_name: str,
        exporter: InMemorySpanExporter) -> None:
    app = make_app(queue=queue_name)
    aioqueue.otel.instrument(app, tracer_provider=_provider(exporter), consumer_parent=True)

    @app.task
    async def add(x: int, y: int) -> int:
        # the consumer span is current while the task runs
        inner = trace.get_current_span()
        assert inner.is_recording()
        return x + y

    async with app, running(app):
        assert await (await add.enqueue(1, 2)).result(timeout=10) == 3
    (send,) = _kind(exporter, SpanKind.PRODUCER)
    (process,) = _kind(exporter, SpanKind.CONSUMER)
    assert process.parent is not None
    assert process.parent.span_id == send.get_span_context().span_id
    assert process.get_span_context().trace_id == send.get_span_context().trace_id


async def test_enqueue_many_is_one_producer_span_whose_context_every_job_stores(
        make_app: Callable[..., aioqueue.App], queue_name: str,
        exporter: InMemorySpanExporter) -> None:
    app = make_app(queue=queue_name)
    aioqueue.otel.instrument(app, tracer_provider=_provider(exporter))

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        jobs = await add.enqueue_many([add.bind(n, n) for n in range(3)])
        stored = [(await app.broker.job_fields(queue_name, j.id, Field.TRACE))[0]
                  for j in jobs]
        async with running(app):
            assert [await j.result(timeout=10) for j in jobs] == [0, 2, 4]
    (send,) = _kind(exporter, SpanKind.PRODUCER)
    assert (send.attributes or {})["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in (send.attributes or {})
    assert stored == [_traceparent(send)] * 3
    consumers = _kind(exporter, SpanKind.CONSUMER)
    assert sorted((s.attributes or {})["messaging.message.id"] for s in consumers) == sorted(
        j.id for j in jobs)
    assert all(s.links[0].context.span_id == send.get_span_context().span_id
               for s in consumers)


async def test_tracestate_travels_with_the_job(
        make_app: Callable[..., aioqueue.App], queue_name: str,
        exporter: InMemorySpanExporter) -> None:
    app = make_app(queue=queue_name)
    provider = _provider(exporter)
    aioqueue.otel.instrument(app, tracer_provider=provider)

    @app.task
    async def noop() -> None:
        return None

    incoming = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1),
                           trace_state=TraceState([("vendor", "v1")]))
    async with app, running(app):
        with trace.use_span(NonRecordingSpan(incoming)):
            job = await noop.enqueue()
        await job.result(timeout=10)
        (stored,) = await app.broker.job_fields(queue_name, job.id, Field.TRACE)
    (send,) = _kind(exporter, SpanKind.PRODUCER)
    assert send.get_span_context().trace_id == 0x1234  # the caller's trace
    assert stored == f"{_traceparent(send)} vendor=v1"
    (process,) = _kind(exporter, SpanKind.CONSUMER)
    assert process.links[0].context.trace_state.get("vendor") == "v1"


async def test_without_tracing_nothing_is_stored_and_a_traced_worker_starts_a_root_span(
        make_app: Callable[..., aioqueue.App], queue_name: str,
        exporter: InMemorySpanExporter) -> None:
    producer = make_app(queue=queue_name)
    worker = make_app(queue=queue_name)
    aioqueue.otel.instrument(worker, tracer_provider=_provider(exporter))
    for app in (producer, worker):
        @app.task(name="add")
        async def add(x: int, y: int) -> int:
            return x + y
    plain = producer.tasks["add"]
    async with producer, worker, running(worker):
        job = await plain.enqueue(2, 3)
        assert await job.result(timeout=10) == 5
        assert await producer.broker.job_fields(queue_name, job.id, Field.TRACE) == [None]
    assert not _kind(exporter, SpanKind.PRODUCER)
    (process,) = _kind(exporter, SpanKind.CONSUMER)
    assert process.links == () and process.parent is None
    # uninstrument: spans stop
    aioqueue.otel.uninstrument(worker)
    assert worker.backend.tracer is None


BLOCK_OTEL = """
import importlib.abc, sys

class NoOtel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'opentelemetry':
            raise ImportError(name + ' is not installed (blocked by the test)')
        return None

sys.meta_path.insert(0, NoOtel())
"""


def test_aioqueue_runs_without_opentelemetry_and_never_imports_its_tracing_unasked() -> None:
    """(redis-py itself imports OpenTelemetry when it is installed, so the test
    hides the package: aioqueue, its worker and its CLI import and run without it.)"""
    code = BLOCK_OTEL + (
        "import aioqueue, aioqueue.cli, aioqueue.supervisor, aioqueue.dashboard\n"
        "assert 'aioqueue.otel' not in sys.modules\n"
        "try:\n"
        "    import aioqueue.otel\n"
        "except ImportError:\n"
        "    print('otel needs the extra')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.strip() == "otel needs the extra"


@pytest.mark.parametrize("bad", ["", "x" * 1025, "00-abc\n-01", "00-\x00"])
async def test_the_enqueue_script_refuses_a_malformed_trace_context(
        make_app: Callable[..., aioqueue.App], queue_name: str, bad: str) -> None:
    app = make_app(queue=queue_name)
    async with app:
        with pytest.raises(aioqueue.AioqueueError, match="trace context"):
            await app.broker.enqueue(queue_name, "j1", "t", '{"args": []}', extra={"tc": bad})
        assert await app.broker.job_fields(queue_name, "j1", Field.TASK) == [None]
