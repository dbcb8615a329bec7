"""The declarative half of an App: its tasks, schedules, lifecycle hooks and
middleware. Nothing here talks to Redis; :class:`~aioqueue.App` adds the
connection, enqueue by name and the operator paths."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta, tzinfo
from typing import Any, Concatenate, ParamSpec, Protocol, Self, TypeVar, overload

from .backend import Backend
from .context import JobContext, Middleware
from .errors import ConfigurationError, TaskNotFound
from .flow import RateLimit, check_max_concurrency
from .keys import check_name
from .options import EnqueueOptions
from .retry import RetryPolicy
from .schedule import MissedPolicy, Schedule, make_schedule
from .task import Task

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` with options returns."""

    @overload
    def __call__(
        self, fn: Callable[Concatenate[JobContext, P], Coroutine[Any, Any, R]], /
    ) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class TaskRegistry:
    """Tasks, schedules, hooks and middleware, declared at import time."""

    backend: Backend
    default_queue: str
    default_retry: RetryPolicy

    def __init__(self) -> None:
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        self.startup_hooks: list[Callable[[Any], Awaitable[None]]] = []
        self.shutdown_hooks: list[Callable[[Any], Awaitable[None]]] = []
        self.middlewares: list[Middleware] = []
        self.rate_limits: dict[str, RateLimit] = {}
        """Rate limits declared in code, by task name (``@app.task(rate_limit=)``)."""
        self.queue_rate_limits: dict[str, RateLimit] = {}
        """Queue-wide rate limits declared in code (``app.limit_queue``)."""
        self.concurrency_limits: dict[str, int] = {}
        """Most running jobs per concurrency key, by task name
        (``@app.task(max_concurrency=)``)."""
        self.key_rate_limits: dict[str, RateLimit] = {}
        """Rate limits of each concurrency key on its own, by task name
        (``@app.task(key_rate_limit=)``)."""

    @overload
    def task(
        self, fn: Callable[Concatenate[JobContext, P], Coroutine[Any, Any, R]], /
    ) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str | None = None,
        max_tries: int = 1,
        max_deliveries: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        fail_on: tuple[type[BaseException], ...] = (),
        priority: int = 0,
        result_ttl: float | None = None,
        rate_limit: RateLimit | str | None = None,
        concurrency_key: Callable[..., Any] | None = None,
        max_concurrency: int | None = None,
        key_rate_limit: RateLimit | str | None = None,
    ) -> TaskDecorator: ...

    def task(  # type: ignore[misc]
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        max_tries: int = 1,
        max_deliveries: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        fail_on: tuple[type[BaseException], ...] = (),
        priority: int = 0,
        result_ttl: float | None = None,
        rate_limit: RateLimit | str | None = None,
        concurrency_key: Callable[..., Any] | None = None,
        max_concurrency: int | None = None,
        key_rate_limit: RateLimit | str | None = None,
    ) -> Any:
        """Register a function as a task.

        ``async def`` functions run on the worker's event loop; plain ``def``
        functions run in a worker thread (``App(sync_concurrency=)`` threads at
        most), so blocking code does not stall other jobs. A first parameter
        annotated :class:`JobContext` receives the job's context and is not
        part of the enqueue signature.

        :param name: name stored in jobs and used by ``App.enqueue(name)``
            (default: the function's ``__qualname__``, e.g. ``"add"``).
        :param queue: the queue its jobs go to (default: the app's ``queue``).
        :param max_tries: attempts before the job is dead-lettered.
        :param max_deliveries: lease expiries (crashed or hung workers) tolerated
            before the job is dead-lettered (default: the worker setting).
        :param timeout: seconds one attempt may run; a timeout is a failure.
        :param retry: backoff between attempts (default: the app's).
        :param retry_on: exception types that are retried; others fail at once.
        :param fail_on: exception types that fail at once even if in ``retry_on``.
        :param priority: default priority; higher runs first.
        :param result_ttl: seconds the result is kept (default: the app's).
        :param rate_limit: most starts of this task, on every worker together
            (``"10/s"``, ``"600/m"``, ``"1000/h"`` or a :class:`RateLimit`
            with a burst); enforced on the server, changeable at runtime
            (``aioqueue limits``). See the README, "Flow control".
        :param max_concurrency: most jobs of this task running at once per
            concurrency key, on every worker together (without
            ``concurrency_key``: for the whole task); changeable at runtime.
        :param concurrency_key: called with the validated arguments by name
            at enqueue (``lambda customer_id, **_: customer_id``), returns the
            job's key (text or int; None: the job is not limited). Keys are
            served round-robin. Needs ``max_concurrency`` or ``key_rate_limit``.
        :param key_rate_limit: most starts per key (each key its own limiter,
            on every worker together; ``"1/s"`` or a :class:`RateLimit`);
            changeable at runtime.
        """
        limit = None if rate_limit is None else RateLimit.coerce(rate_limit)
        key_limit = None if key_rate_limit is None else RateLimit.coerce(key_rate_limit)
        if max_concurrency is not None:
            check_max_concurrency(max_concurrency)
        elif concurrency_key is not None and key_limit is None:
            raise ConfigurationError("concurrency_key needs max_concurrency or key_rate_limit")
        if concurrency_key is not None and not callable(concurrency_key):
            raise ConfigurationError("concurrency_key must be a function of the arguments")

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or f.__qualname__
            if task_name in self.tasks:
                raise ConfigurationError(
                    f"a task named {task_name!r} is already registered; "
                    "give one of them another name with @app.task(name=...)")
            defaults = EnqueueOptions(
                queue=queue or self.default_queue, priority=priority, max_tries=max_tries,
                max_deliveries=max_deliveries, timeout=timeout, result_ttl=result_ttl)
            t: Task[Any, Any] = Task(
                self.backend, f, name=task_name, defaults=defaults,
                retry=retry or self.default_retry, retry_on=retry_on, fail_on=fail_on,
                concurrency_key=concurrency_key, max_concurrency=max_concurrency,
                key_rate_limit=key_limit,
            )
            self.tasks[task_name] = t
            if limit is not None:
                self.rate_limits[task_name] = limit
            if max_concurrency is not None:
                self.concurrency_limits[task_name] = max_concurrency
            if key_limit is not None:
                self.key_rate_limits[task_name] = key_limit
            return t

        if fn is not None:
            return register(fn)
        return register

    def schedule(
        self,
        task: Task[P, Any],
        *,
        cron: str | None = None,
        every: timedelta | float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        tz: str | tzinfo = "UTC",
        missed: MissedPolicy = "run_once",
    ) -> Schedule:
        """Run ``task(*args, **kwargs)`` periodically: on a cron expression
        (evaluated in ``tz``, DST-aware) or every fixed interval (aligned to
        the epoch, so all supervisors agree). Each tick is enqueued exactly
        once across all supervisors consuming the task's queue, as a job with
        the id ``cron.<name>.<tick ms>``.

        :param name: the schedule's identity (default: the task's name); give
            one when a task has several schedules.
        :param missed: ``"run_once"`` (default) fires the latest missed tick
            once when a supervisor comes back; ``"skip"`` drops missed ticks.
        """
        sched = make_schedule(task, cron=cron, every=every, args=args, kwargs=kwargs or {},
                              name=name, tz=tz, missed=missed)
        if sched.name in self.schedules:
            raise ConfigurationError(f"a schedule named {sched.name!r} already exists; "
                                     "give this one another name=")
        self.schedules[sched.name] = sched
        return sched

    def cron(
        self,
        cron: str | None = None,
        *,
        every: timedelta | float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        tz: str | tzinfo = "UTC",
        missed: MissedPolicy = "run_once",
    ) -> Callable[[T], T]:
        """Decorator form of :meth:`schedule`, placed above ``@app.task``
        (or directly on an ``async def``, which is then registered as a task)."""

        def decorate(target: T) -> T:
            task: Task[Any, Any] = (
                target if isinstance(target, Task) else self.task(target))  # type: ignore[call-overload]
            self.schedule(task, cron=cron, every=every, args=args, kwargs=kwargs, name=name,
                          tz=tz, missed=missed)
            return target

        return decorate

    def on_startup(self, hook: Callable[[Self], Awaitable[None]]
                   ) -> Callable[[Self], Awaitable[None]]:
        """Run ``await hook(app)`` once when a worker process starts, before any
        job (create shared clients here and keep them in ``app.state``)."""
        self.startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: Callable[[Self], Awaitable[None]]
                    ) -> Callable[[Self], Awaitable[None]]:
        """Run ``await hook(app)`` once when a worker process stops, after the
        last job; hooks run in reverse order of registration."""
        self.shutdown_hooks.append(hook)
        return hook

    def middleware(self, mw: Middleware) -> Middleware:
        """Run ``await mw(ctx, call_next)`` around every job in a worker."""
        self.middlewares.append(mw)
        return mw

    def limit_queue(self, queue: str, rate_limit: RateLimit | str) -> None:
        """Cap the starts of all tasks of ``queue`` together, on every worker
        (``"100/s"`` or a :class:`RateLimit`); stored when the app opens."""
        self.queue_rate_limits[check_name("queue", queue)] = RateLimit.coerce(rate_limit)

    def task_queues(self) -> list[str]:
        """The queues of the registered tasks and schedules, in the order they
        were declared (the default queue when there is none): what a worker
        consumes when no queues are named."""
        found = [t.queue for t in self.tasks.values()]
        found += [s.queue for s in self.schedules.values()]
        return list(dict.fromkeys(found)) or [self.default_queue]

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise TaskNotFound(f"no task named {name!r} in this app") from None


