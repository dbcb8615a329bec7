"""Tasks: typed wrappers around the user's coroutine functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, Unpack

import anyio
import anyio.to_thread
import pydantic_core

from .backend import Backend
from .broker_flow import enqueue_grouped_many
from .codec import ArgumentCodec
from .context import JobContext, make_context
from .errors import ConfigurationError, PayloadNotSerializable, RedisOutOfMemory
from .flow import RateLimit, check_concurrency_key, group_id
from .job import Job
from .keys import check_task_name
from .options import UNSET, EnqueueKwargs, EnqueueOptions
from .prepared import PreparedJob, check_payload, new_job_id, prepare_job, submit_job
from .record import Field, MemberJob, overrides_wire
from .retry import RetryPolicy

if TYPE_CHECKING:
    pass

__all__ = ["BoundCall", "Signature", "Task"]

P = ParamSpec("P")
R = TypeVar("R")

@dataclass(frozen=True, slots=True)
class Signature(Generic[R]):
    """A task with some of its arguments, for use in a workflow
    (``task.s(...)``). In a chain, every step after the first receives the
    previous step's result as its first positional argument; a chord's
    callback receives the list of the group's results."""

    task: Task[Any, R]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> str:
        """Arguments of a first member: validated against the signature now."""
        return self.task.codec.encode(self.args, self.kwargs)

    def member(self, job_id: str) -> MemberJob:
        """A member created now (arguments validated now), with its task's
        priority and per-job settings, as for a job enqueued alone."""
        job = self.task.prepare(self.args, self.kwargs)
        return MemberJob(job_id, job.task, job.payload, job.priority,
                         overrides_wire(job.fields))

    def spec(self, job_id: str) -> str:
        """A later step: its extra arguments (validated when it runs) and its
        task's priority and per-job settings."""
        try:
            rest = pydantic_core.to_json(list(self.args)).decode()[1:-1]
            kwargs = pydantic_core.to_json(self.kwargs).decode()
        except pydantic_core.PydanticSerializationError as exc:
            raise PayloadNotSerializable(str(exc)) from exc
        job = self.task.prepare_payload("", job_id=job_id)
        return "\x1f".join((job_id, self.task.name, rest, kwargs, str(job.priority),
                            overrides_wire(job.fields, "\x1e")))


@dataclass(frozen=True, slots=True)
class BoundCall(Generic[P, R]):
    """One call of a task, for ``enqueue_many``."""

    task: Task[P, R]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Task(Generic[P, R]):
    """A registered task. Call it to run the function here; ``enqueue`` it to
    run it on a worker."""

    def __init__(
        self,
        backend: Backend,
        fn: Callable[..., Any],
        *,
        name: str,
        defaults: EnqueueOptions,
        retry: RetryPolicy,
        retry_on: tuple[type[BaseException], ...],
        fail_on: tuple[type[BaseException], ...] = (),
        call_options: EnqueueOptions | None = None,
        codec: ArgumentCodec | None = None,
        concurrency_key: Callable[..., Any] | None = None,
        max_concurrency: int | None = None,
        key_rate_limit: RateLimit | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"task {name!r} must be a function")
        check_task_name(name)
        missing = [k for k in ("queue", "priority", "max_tries", "timeout", "result_ttl",
                               "max_deliveries") if getattr(defaults, k) is UNSET]
        if missing:
            raise ConfigurationError(f"task {name!r}: defaults need {', '.join(missing)}")
        self.backend = backend
        """The app's broker, listener and limits this task enqueues with."""
        # the task's defaults the worker reads for every job (``defaults`` is
        # frozen): attributes, not properties
        self.max_tries: int = int(defaults.max_tries)  # type: ignore[arg-type]
        self.timeout: float | None = (
            defaults.timeout if isinstance(defaults.timeout, int | float) else None)
        self.fn = fn
        self.name = name
        self.defaults = defaults
        """The task's own options (every enqueue starts from these)."""
        self.call_options = call_options or EnqueueOptions()
        """Options set with :meth:`options` (UNSET: the default applies)."""
        self.retry = retry
        self.retry_on = retry_on
        self.fail_on = fail_on
        self.is_async = inspect.iscoroutinefunction(fn)
        self.codec = codec or ArgumentCodec(fn)
        self.concurrency_key = concurrency_key
        """The function giving a job's concurrency key (None: none)."""
        self.max_concurrency = max_concurrency
        """Most running jobs per concurrency key, as declared (None: none)."""
        self.key_rate_limit = key_rate_limit
        """Rate limit of each concurrency key, as declared (None: none)."""
        self.grouped = max_concurrency is not None or key_rate_limit is not None
        """Its jobs belong to concurrency groups (one per key)."""
        if self.call_options.concurrency_key is not UNSET and not self.grouped:
            raise ConfigurationError(
                f"task {name!r}: a concurrency_key option needs @app.task(max_concurrency=...) "
                "or key_rate_limit=...")
        # what the Lua scripts need in the record (they do not know the task);
        # max_tries and timeout are stored only when a call overrides them
        self._stored = EnqueueOptions(
            queue=defaults.queue, priority=defaults.priority,
            max_deliveries=defaults.max_deliveries, result_ttl=defaults.result_ttl,
        ).merged(self.call_options)
        # everything but the id and payload is the same for each enqueue: built once
        self._shape = prepare_job(name, "", self._stored)
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    # the task's defaults, as the worker reads them
    @property
    def queue(self) -> str:
        return str(self.defaults.queue)

    @property
    def priority(self) -> int:
        return int(self.defaults.priority)  # type: ignore[arg-type]

    @property
    def max_deliveries(self) -> int | None:
        value = self.defaults.max_deliveries
        return value if isinstance(value, int) else None

    @property
    def result_ttl(self) -> float | None:
        value = self.defaults.result_ttl
        return value if isinstance(value, int | float) else None

    def __repr__(self) -> str:
        return f"Task({self.name!r}, queue={self.queue!r})"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        """Run the function directly, in this process, without a queue.

        A task that takes a ``JobContext`` gets a local one (job id ``"local"``,
        progress reports go nowhere). A plain ``def`` task runs in a thread.
        """
        return self.invoke(None, list(args), dict(kwargs))

    async def invoke(self, ctx: JobContext | None, args: list[Any],
                     kwargs: dict[str, Any]) -> R:
        """Call the function with ``ctx`` prepended when it takes one."""
        if self.codec.wants_context:
            args = [ctx or make_context(self.backend, None, "local", self.max_tries), *args]
        if self.is_async:
            result: R = await self.fn(*args, **kwargs)
            return result
        call = functools.partial(self.fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(
            call, abandon_on_cancel=True, limiter=self.backend.sync_limiter)

    def options(
        self,
        options: EnqueueOptions | None = None,
        /,
        **given: Unpack[EnqueueKwargs],
    ) -> Task[P, R]:
        """A copy of this task whose enqueues use these options (on top of
        options set before). ``timeout=None`` means no timeout for those jobs.

        :raises ConfigurationError: an invalid value.
        """
        merged = self.call_options.merged(options or EnqueueOptions()).merged(
            EnqueueOptions(**given))
        return Task(
            self.backend, self.fn, name=self.name, defaults=self.defaults, retry=self.retry,
            retry_on=self.retry_on, fail_on=self.fail_on, call_options=merged,
            codec=self.codec, concurrency_key=self.concurrency_key,
            max_concurrency=self.max_concurrency, key_rate_limit=self.key_rate_limit,
        )

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """This task with some arguments, for ``chain``/``group``/``chord``."""
        return Signature(self, args, kwargs)

    def bind(self, *args: P.args, **kwargs: P.kwargs) -> BoundCall[P, R]:
        """Capture one call's arguments for ``enqueue_many``."""
        return BoundCall(self, args, kwargs)

    @property
    def target_queue(self) -> str:
        """The queue the next enqueue goes to."""
        return str(self._stored.queue)

    def prepare(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> PreparedJob:
        """Validate one call (nothing is written).

        :raises pydantic.ValidationError: arguments do not fit the signature.
        :raises PayloadTooLarge: over ``App(max_payload_bytes=)``.
        """
        if self.grouped:
            return self._prepare_grouped(args, kwargs)
        payload = self.codec.encode(args, kwargs)
        check_payload(self.name, payload, self.backend.max_payload_bytes)
        shape = self._shape
        job_id = shape.job_id if shape.fixed_id else new_job_id()
        return PreparedJob(job_id, self.name, payload, shape.priority, shape.delay_ms,
                           shape.at_ms, shape.fields, shape.fixed_id, shape.unique)

    def _prepare_grouped(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> PreparedJob:
        """``prepare`` for a task with concurrency groups: also the job's
        group, from the call's ``concurrency_key`` option, else the task's key
        function (given the validated arguments), else the task's one group."""
        if self.concurrency_key is not None and not isinstance(self._stored.concurrency_key, str):
            payload, values = self.codec.encode_values(args, kwargs)
            group = self._group(values)
        else:
            payload, group = self.codec.encode(args, kwargs), self._group({})
        check_payload(self.name, payload, self.backend.max_payload_bytes)
        shape = self._shape
        job_id = shape.job_id if shape.fixed_id else new_job_id()
        return PreparedJob(job_id, self.name, payload, shape.priority, shape.delay_ms,
                           shape.at_ms, shape.fields, shape.fixed_id, shape.unique, group)

    def _group(self, values: Mapping[str, Any]) -> str | None:
        """The group of a job of this (grouped) task: the ``concurrency_key``
        option, else the key function's answer for the validated arguments
        ``values``, else the task's one group; None: the job is not limited."""
        given = self._stored.concurrency_key
        if isinstance(given, str):
            return group_id(self.name, given)
        if self.concurrency_key is None:
            return group_id(self.name, "")
        try:
            raw = self.concurrency_key(**values)
        except Exception as exc:
            raise ConfigurationError(
                f"task {self.name!r}: its concurrency_key function raised "
                f"{type(exc).__name__}: {exc}") from exc
        return None if raw is None else group_id(self.name, check_concurrency_key(raw))

    def prepare_payload(self, payload: str, *, job_id: str) -> PreparedJob:
        """A job with already encoded arguments (a schedule's tick); a
        grouped task's job gets its group from those arguments."""
        job = prepare_job(self.name, payload, self._stored.merged(EnqueueOptions(job_id=job_id)))
        if not self.grouped:
            return job
        values: dict[str, Any] = {}
        if self.concurrency_key is not None and payload:
            positional, named = self.codec.decode(payload)
            names = [n for n in self.codec.names if n in self.codec.positional_only]
            values = {**dict(zip(names, positional, strict=False)), **named}
        return job._replace(group=self._group(values))

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Validate the arguments and enqueue one job.

        :raises pydantic.ValidationError: arguments do not fit the signature
            (nothing is written).
        """
        job = self.prepare(args, kwargs)
        queue = self.target_queue
        if self.backend.tracer is None:
            job_id = await job.submit(self.backend.broker, queue)
        else:
            job_id = await submit_job(self.backend, job, queue)
        return Job(self.backend, job_id, queue, self.codec.returns, enqueued=True)

    async def enqueue_many(
        self, calls: Iterable[BoundCall[P, R]], *, chunk_size: int = 1000
    ) -> list[Job[R]]:
        """Validate every call first, then enqueue them in pipelined chunks.

        Nothing is written if any call fails validation. With a ``job_id``
        option every call would share one id, so it is refused here.
        """
        if isinstance(self.call_options.job_id, str):
            raise ConfigurationError("enqueue_many cannot use a fixed job_id option")
        if self._shape.unique is not None:
            raise ConfigurationError("enqueue_many cannot use a unique_key option: "
                                     "enqueue each job with task.options(unique_key=...)")
        queue = self.target_queue
        if self.grouped:
            return await self._enqueue_grouped(queue, calls, chunk_size)
        prepared = [self.prepare(c.args, c.kwargs).as_tuple() for c in calls]
        tracer = self.backend.tracer
        if tracer is None:
            await self._enqueue_chunks(queue, prepared, chunk_size)
        else:  # one producer span for the call; every record stores its context
            with tracer.sending(queue, self.name, [p[0] for p in prepared]) as context:
                if context:
                    prepared = [(*p[:6], {**p[6], Field.TRACE.value: context})
                                for p in prepared]
                await self._enqueue_chunks(queue, prepared, chunk_size)
        return [Job(self.backend, p[0], queue, self.codec.returns, enqueued=True) for p in prepared]

    async def _enqueue_grouped(self, queue: str, calls: Iterable[BoundCall[P, R]],
                               chunk_size: int) -> list[Job[R]]:
        """``enqueue_many`` for a task with concurrency groups: each job with
        its own group, chunks of pipelined enqueues (one MULTI/EXEC each)."""
        grouped = [self.prepare(c.args, c.kwargs) for c in calls]

        async def send(jobs: list[PreparedJob]) -> None:
            for start in range(0, len(jobs), chunk_size):
                await enqueue_grouped_many(self.backend.broker, queue,
                                           jobs[start:start + chunk_size])

        tracer = self.backend.tracer
        if tracer is None:
            await send(grouped)
        else:  # one producer span for the call; every record stores its context
            with tracer.sending(queue, self.name, [p.job_id for p in grouped]) as context:
                grouped = [p.traced(context) for p in grouped]
                await send(grouped)
        return [Job(self.backend, p.job_id, queue, self.codec.returns, enqueued=True)
                for p in grouped]

    async def _enqueue_chunks(
        self, queue: str,
        prepared: list[tuple[str, str, str, int, int, int | None, dict[str, str | int]]],
        chunk_size: int,
    ) -> None:
        for start in range(0, len(prepared), chunk_size):
            try:
                await self.backend.broker.enqueue_many(queue, prepared[start:start + chunk_size])
            except RedisOutOfMemory as exc:  # this chunk wrote nothing (one MULTI/EXEC)
                exc.written_ids = tuple(p[0] for p in prepared[:start])
                exc.unwritten_ids = tuple(p[0] for p in prepared[start:])
                raise
