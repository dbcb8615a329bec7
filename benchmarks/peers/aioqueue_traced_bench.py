"""aioqueue with OpenTelemetry tracing on (issue 11 item 6): the producer and
the worker call ``aioqueue.otel.instrument(app)`` with an SDK tracer provider
whose spans go to a batch processor and an exporter that drops them, so the
cost measured is aioqueue's and the SDK's span work, not an exporter's I/O.

Needs ``opentelemetry-sdk`` in the bench venv (``pip install -e '.[otel]'
opentelemetry-sdk``). Compare with ``aioqueue`` in the same run:
``python -m benchmarks --peers aioqueue,aioqueue_traced``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from _common import QUEUE, main
from aioqueue_bench import Aioqueue, build
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import aioqueue
import aioqueue.otel


class Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def traced(url: str) -> tuple[aioqueue.App, Any]:
    app, task = build(url)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    aioqueue.otel.instrument(app, tracer_provider=provider)
    return app, task


class AioqueueTraced(Aioqueue):
    name = "aioqueue_traced"
    dists = ("aioqueue", "opentelemetry-sdk")
    notes = {**Aioqueue.notes, "general": Aioqueue.notes["general"] + " Tracing on "
             "(aioqueue.otel.instrument, SDK provider, batch processor, dropping exporter) "
             "in the producer and the worker."}

    async def open(self, url: str) -> None:
        self.app, self.task = traced(url)
        await self.app.open()

    async def run_worker(self, url: str, concurrency: int) -> None:
        app, _ = traced(url)
        await aioqueue.Supervisor(app, queues=[QUEUE], concurrency=concurrency).run()


if __name__ == "__main__":
    main(AioqueueTraced())
