"""What job, task and workflow handles need of an app, and nothing more.

Handles (``Task``, ``Job``, ``Workflow``, a task's local ``JobContext``) hold a
:class:`Backend`, not the :class:`~aioqueue.App`: the broker and the result
listener while the app is open, the limits they apply and the app's shared
state. The app attaches them in ``open()`` and detaches them in ``close()``,
so a handle made before ``async with app:`` works once the app is open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .broker import Broker, ClaimedJob, Settlement
    from .listener import ResultListener


class JobTracer(Protocol):
    """Tracing of jobs (:mod:`aioqueue.otel` implements it with OpenTelemetry).
    An app without one (the default) pays one ``is None`` test per enqueue
    and per attempt, and stores nothing."""

    def sending(self, queue: str, task: str, job_ids: Sequence[str]
                ) -> AbstractContextManager[str]:
        """A producer span around one enqueue call (``job_ids``: the jobs it
        writes); yields the trace context to store in each record ('' = none)."""
        ...

    def processing(self, job: ClaimedJob, worker_id: str
                   ) -> AbstractContextManager[Callable[[Settlement], None]]:
        """A consumer span around one attempt of ``job``; the yielded function
        takes the attempt's outcome before the span ends."""
        ...


@dataclass(slots=True)
class Backend:
    """An app's broker, result listener, limits and shared state, for handles.

    :param max_payload_bytes: largest JSON payload accepted at enqueue.
    :param result_ttl_ms: how long results are kept (the default for cancel).
    :param sync_concurrency: most plain ``def`` tasks running at once.
    :param state: the app's shared state (``app.state``), the same dict.
    """

    max_payload_bytes: int
    result_ttl_ms: int
    sync_concurrency: int
    state: dict[str, Any] = field(default_factory=dict)
    tracer: JobTracer | None = None
    """Set by :func:`aioqueue.otel.instrument`; None: no tracing."""
    _broker: Broker | None = None
    _results: ResultListener | None = None
    _sync_limiter: anyio.CapacityLimiter | None = None

    @property
    def broker(self) -> Broker:
        """The open app's broker.

        :raises ConfigurationError: the app is not open.
        """
        if self._broker is None:
            raise ConfigurationError("the app is not open: use 'async with app:'")
        return self._broker

    @property
    def results(self) -> ResultListener:
        """The open app's result listener.

        :raises ConfigurationError: the app is not open.
        """
        if self._results is None:
            raise ConfigurationError("the app is not open: use 'async with app:'")
        return self._results

    @property
    def is_open(self) -> bool:
        return self._broker is not None

    @property
    def sync_limiter(self) -> anyio.CapacityLimiter:
        """Bounds the threads running plain ``def`` tasks (made on first use,
        inside the event loop)."""
        if self._sync_limiter is None:
            self._sync_limiter = anyio.CapacityLimiter(self.sync_concurrency)
        return self._sync_limiter

    def attach(self, broker: Broker, results: ResultListener) -> None:
        self._broker = broker
        self._results = results

    def detach(self) -> None:
        self._broker = None
        self._results = None
