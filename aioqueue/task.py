"""Tasks: typed wrappers around the user's coroutine functions."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import secrets
import typing
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import anyio
import anyio.to_thread
import pydantic
import pydantic_core
from pydantic import TypeAdapter

from .context import JobContext, make_context
from .errors import (
    ConfigurationError,
    PayloadNotSerializable,
    PayloadTooLarge,
)
from .job import Job
from .keys import check_name, check_task_name
from .record import override_fields
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .app import App
    from .workflow import Signature

P = ParamSpec("P")
R = TypeVar("R")

MIN_PRIORITY, MAX_PRIORITY = -100, 100
MAX_SECONDS = 10 * 365 * 86_400.0


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True, kw_only=True, slots=True)
class EnqueueOptions:
    """Per-call options. Fields left UNSET take the task's default."""

    queue: str = UNSET
    delay: float | None = None
    at: datetime | None = None
    priority: int = UNSET
    job_id: str | None = None
    max_tries: int = UNSET
    timeout: float | None = UNSET
    result_ttl: float = UNSET


def check_options(
    *,
    delay: float | None = None,
    at: datetime | None = None,
    priority: int | None = None,
    max_tries: int | None = None,
    timeout: float | None = None,
    result_ttl: float | None = None,
    job_id: str | None = None,
    max_deliveries: int | None = None,
) -> None:
    """Refuse invalid option values before anything is written."""

    def seconds(name: str, value: object, *, minimum: float, inclusive: bool) -> None:
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value) and value <= MAX_SECONDS
              and (value >= minimum if inclusive else value > minimum))
        if not ok:
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            raise ConfigurationError(
                f"{name} must be a finite number of seconds {bound} and at most "
                f"{MAX_SECONDS:g} (10 years), got {value!r}")

    def count(name: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**9:
            raise ConfigurationError(f"{name} must be an int in [1, 10**9], got {value!r}")

    if delay is not None:
        seconds("delay", delay, minimum=0, inclusive=True)
    if delay is not None and at is not None:
        raise ConfigurationError("give delay or at, not both")
    if at is not None and not isinstance(at, datetime):
        raise ConfigurationError(f"at must be a datetime, got {at!r}")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise ConfigurationError(
            f"priority must be an int in [{MIN_PRIORITY}, {MAX_PRIORITY}], got {priority!r}")
    if max_tries is not None:
        count("max_tries", max_tries)
    if max_deliveries is not None:
        count("max_deliveries", max_deliveries)
    if timeout is not None:
        # below a millisecond a timeout would round to 0, which means "none"
        seconds("timeout", timeout, minimum=0.001, inclusive=True)
    if result_ttl is not None:
        seconds("result_ttl", result_ttl, minimum=0.001, inclusive=True)
    if job_id is not None:
        check_name("job_id", job_id)


def _ms(seconds: float) -> int:
    """A positive duration in whole milliseconds (never 0, which means "none")."""
    return max(1, round(seconds * 1000))


def epoch_ms(at: datetime | None) -> int | None:
    """An absolute due time in epoch ms (naive datetimes are UTC)."""
    if at is None:
        return None
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000)


def delay_ms(delay: float | None) -> int:
    return round(delay * 1000) if delay else 0


def record_fields(
    *, max_tries: int | None, timeout: float | None | _Unset, result_ttl: float | None,
    max_deliveries: int | None,
) -> dict[str, str | int]:
    """Per-job overrides stored in the record (absent = the task's default).
    ``timeout=None`` stores 0: "no timeout", overriding the task's."""
    return override_fields(
        max_tries=max_tries,
        timeout_ms=None if isinstance(timeout, _Unset) else 0 if timeout is None else _ms(timeout),
        result_ttl_ms=None if result_ttl is None else _ms(result_ttl),
        max_deliveries=max_deliveries)


def new_job_id() -> str:
    return secrets.token_urlsafe(12)


class ArgumentCodec:
    """Validates a task's arguments against its signature and turns them into
    JSON and back. Built once per task."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot resolve the annotations of {fn.__qualname__}: {exc}") from exc
        fields: dict[str, Any] = {}
        self.names: list[str] = []
        self.positional_only: set[str] = set()
        params = list(self.signature.parameters.items())
        self.wants_context = bool(params) and hints.get(params[0][0]) is JobContext
        if self.wants_context:
            params = params[1:]
        for name, param in params:
            if hints.get(name) is JobContext:
                raise ConfigurationError(
                    f"task {fn.__qualname__}: the JobContext parameter must come first")
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigurationError(
                    f"task {fn.__qualname__}: *args/**kwargs parameters are not supported; "
                    "name every parameter so it can be validated")
            if param.kind is param.POSITIONAL_ONLY:
                self.positional_only.add(name)
            annotation = hints.get(name, Any)
            default = ... if param.default is param.empty else param.default
            fields[f"p{len(self.names)}"] = (annotation, pydantic.Field(default, alias=name))
            self.names.append(name)
        self.model: type[pydantic.BaseModel] = pydantic.create_model(
            f"{fn.__name__}_args",
            # inf and NaN have no JSON form: refuse them at enqueue
            __config__=pydantic.ConfigDict(extra="forbid", populate_by_name=False,
                                           arbitrary_types_allowed=False,
                                           allow_inf_nan=False),
            **fields,
        )
        ret = hints.get("return", Any)
        self.returns: TypeAdapter[Any] = TypeAdapter(ret)

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.names):
            raise TypeError(f"takes {len(self.names)} positional arguments but "
                            f"{len(args)} were given")
        data = dict(zip(self.names, args, strict=False))
        for key, value in kwargs.items():
            if key in data:
                raise TypeError(f"got multiple values for argument {key!r}")
            if key in self.positional_only:
                raise TypeError(f"argument {key!r} is positional-only")
            data[key] = value
        return data

    def encode(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """Validate (raises ``pydantic.ValidationError``) and serialise."""
        data = self.bind(args, kwargs)
        model = self.model.model_validate(data)
        try:
            return model.model_dump_json(by_alias=True)
        except pydantic_core.PydanticSerializationError as exc:
            raise PayloadNotSerializable(str(exc)) from exc

    def decode(self, payload: str) -> tuple[list[Any], dict[str, Any]]:
        """Parse stored JSON and validate it again; returns call arguments."""
        if payload[:1] == "{":
            # the usual form (a typed enqueue): parsed and validated in one pass
            model = self.model.model_validate_json(payload)
        else:
            raw = json.loads(payload)
            if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], list)
                    and isinstance(raw[1], dict)):
                raise ValueError("arguments must be a JSON object or [args, kwargs]")
            # enqueued by name by a producer without the task code
            model = self.model.model_validate(self.bind(tuple(raw[0]), raw[1]))
        values = {name: getattr(model, f"p{i}") for i, name in enumerate(self.names)}
        pos = [values.pop(n) for n in self.names if n in self.positional_only]
        return pos, values

    def encode_result(self, value: Any) -> str:
        """Validate the return value against the annotation, then serialise.

        :raises pydantic.ValidationError: the value does not fit the annotation.
        """
        checked = self.returns.validate_python(value)
        try:
            return self.returns.dump_json(checked).decode()
        except pydantic_core.PydanticSerializationError as exc:
            raise PayloadNotSerializable(f"result is not JSON-serialisable: {exc}") from exc


def encode_untyped(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """Arguments for a task this process does not know: stored as [args, kwargs]."""
    try:
        return pydantic_core.to_json([list(args), dict(kwargs)]).decode()
    except pydantic_core.PydanticSerializationError as exc:
        raise PayloadNotSerializable(str(exc)) from exc


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
        app: App,
        fn: Callable[..., Any],
        *,
        name: str,
        queue: str,
        max_tries: int,
        max_deliveries: int | None,
        timeout: float | None,
        retry: RetryPolicy,
        retry_on: tuple[type[BaseException], ...],
        priority: int,
        result_ttl: float | None,
        fail_on: tuple[type[BaseException], ...] = (),
        options: EnqueueOptions | None = None,
        codec: ArgumentCodec | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"task {name!r} must be a function")
        check_task_name(name)
        check_name("queue", queue)
        check_options(max_tries=max_tries, timeout=timeout, priority=priority,
                      result_ttl=result_ttl, max_deliveries=max_deliveries)
        self.app = app
        self.fn = fn
        self.name = name
        self.queue = queue
        self.max_tries = max_tries
        self.max_deliveries = max_deliveries
        self.timeout = timeout
        self.retry = retry
        self.retry_on = retry_on
        self.fail_on = fail_on
        self.is_async = inspect.iscoroutinefunction(fn)
        self.priority = priority
        self.result_ttl = result_ttl
        self._options = options or EnqueueOptions()
        self.codec = codec or ArgumentCodec(fn)
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

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
            args = [ctx or make_context(self.app, None, "local", self.max_tries), *args]
        if self.is_async:
            result: R = await self.fn(*args, **kwargs)
            return result
        call = functools.partial(self.fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(
            call, abandon_on_cancel=True, limiter=self.app.sync_limiter)

    def options(
        self,
        *,
        queue: str = UNSET,
        delay: float | None = None,
        at: datetime | None = None,
        priority: int = UNSET,
        job_id: str | None = None,
        max_tries: int = UNSET,
        timeout: float | None = UNSET,
        result_ttl: float = UNSET,
    ) -> Task[P, R]:
        """A copy of this task whose next enqueues use these options."""
        check_options(
            delay=delay, at=at,
            priority=None if priority is UNSET else priority,
            max_tries=None if max_tries is UNSET else max_tries,
            timeout=None if timeout is UNSET else timeout,
            result_ttl=None if result_ttl is UNSET else result_ttl,
            job_id=job_id,
        )
        if queue is not UNSET:
            check_name("queue", queue)
        changes: dict[str, Any] = {k: v for k, v in dict(
            queue=queue, delay=delay, at=at, priority=priority, job_id=job_id,
            max_tries=max_tries, timeout=timeout, result_ttl=result_ttl,
        ).items() if v is not UNSET and v is not None}
        merged = dataclasses.replace(self._options, **changes)
        return Task(
            self.app, self.fn, name=self.name, queue=self.queue, max_tries=self.max_tries,
            max_deliveries=self.max_deliveries, timeout=self.timeout, retry=self.retry,
            retry_on=self.retry_on, priority=self.priority, result_ttl=self.result_ttl,
            fail_on=self.fail_on, options=merged, codec=self.codec,
        )

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """This task with some arguments, for ``chain``/``group``/``chord``."""
        from .workflow import Signature

        return Signature(self, args, kwargs)

    def bind(self, *args: P.args, **kwargs: P.kwargs) -> BoundCall[P, R]:
        """Capture one call's arguments for ``enqueue_many``."""
        return BoundCall(self, args, kwargs)

    def _record_extra(self, opts: EnqueueOptions) -> dict[str, str | int]:
        return record_fields(
            max_tries=None if opts.max_tries is UNSET else opts.max_tries,
            timeout=opts.timeout,
            result_ttl=self.result_ttl if opts.result_ttl is UNSET else opts.result_ttl,
            max_deliveries=self.max_deliveries,
        )

    def _prepare(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[str, str, str, int, int, int | None, dict[str, str | int]]:
        opts = self._options
        payload = self.codec.encode(args, kwargs)
        limit = self.app.max_payload_bytes
        if len(payload) > limit:
            raise PayloadTooLarge(
                f"task {self.name!r}: arguments are {len(payload)} bytes as JSON, over the "
                f"limit of {limit} (App(max_payload_bytes=...))")
        priority = self.priority if opts.priority is UNSET else opts.priority
        job_id = opts.job_id or new_job_id()
        return (job_id, self.name, payload, priority, delay_ms(opts.delay), epoch_ms(opts.at),
                self._record_extra(opts))

    @property
    def target_queue(self) -> str:
        return self.queue if self._options.queue is UNSET else self._options.queue

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Validate the arguments and enqueue one job.

        :raises pydantic.ValidationError: arguments do not fit the signature
            (nothing is written).
        """
        job_id, name, payload, priority, delay_ms, at_ms, extra = self._prepare(args, kwargs)
        queue = self.target_queue
        await self.app.broker.enqueue(
            queue, job_id, name, payload, priority=priority, delay_ms=delay_ms,
            at_ms=at_ms, extra=extra,
        )
        return Job(self.app, job_id, queue, self.codec.returns, enqueued=True)

    async def enqueue_many(
        self, calls: Iterable[BoundCall[P, R]], *, chunk_size: int = 1000
    ) -> list[Job[R]]:
        """Validate every call first, then enqueue them in pipelined chunks.

        Nothing is written if any call fails validation. With a ``job_id``
        option every call would share one id, so it is refused here.
        """
        if self._options.job_id is not None:
            raise ConfigurationError("enqueue_many cannot use a fixed job_id option")
        prepared = [self._prepare(c.args, c.kwargs) for c in calls]
        queue = self.target_queue
        for start in range(0, len(prepared), chunk_size):
            await self.app.broker.enqueue_many(queue, prepared[start:start + chunk_size])
        return [Job(self.app, p[0], queue, self.codec.returns, enqueued=True) for p in prepared]
