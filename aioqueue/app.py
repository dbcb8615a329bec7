"""The application object: the task registry (``registry.py``), the
connection, enqueue by name and the operator paths."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, Unpack

import anyio
from anyio.abc import TaskGroup

from . import dead_letters
from .backend import Backend
from .broker import Broker
from .broker_admin import BrokerAdmin
from .broker_flow import declare_app_limits
from .broker_groups import declare_app_concurrency
from .broker_shards import check_shard_counts, open_shard_counts
from .codec import encode_untyped
from .errors import AioqueueError, ConfigurationError
from .job import Job
from .keys import check_name, check_task_name
from .listener import ResultListener, Wakeup
from .options import EnqueueKwargs, EnqueueOptions
from .prepared import check_payload, prepare_job, submit_job
from .record import JobInfo
from .registry import TaskRegistry
from .retry import RetryPolicy
from .settings import WorkerSettings
from .urls import check_url

LifecycleHook = Callable[["App"], Awaitable[None]]
"""``async def hook(app) -> None``, registered with ``@app.on_startup`` or
``@app.on_shutdown``; runs once per worker process."""

log = logging.getLogger("aioqueue")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class App(TaskRegistry):
    """An aioqueue application.

    ``async with app:`` checks the server and opens the connection pool; it is
    closed on exit. Tasks are registered with :meth:`task`.

    :param url: Redis URL (``redis://``, ``rediss://`` for TLS, ``unix://``);
        default: the ``AIOQUEUE_URL`` environment variable, else
        ``redis://localhost:6379/0``.
    :param prefix: first part of every key; apps with different prefixes on
        one Redis never see each other's jobs.
    :param queue: the default queue of tasks that do not name one.
    :param worker: settings used by the supervisor (leases, intervals).
    :param result_ttl_s: how long results (and finished job records) are kept.
    :param dead_letter_ttl_s: how long dead-lettered jobs are kept.
    :param max_payload_bytes: largest JSON payload accepted at enqueue.
    :param retry: default backoff between attempts of failing tasks.
    :param socket_timeout_s: timeout of ordinary (non-blocking) commands.
    :param max_connections: size of the connection pool (the supervisor raises
        it to fit its concurrency).
    :param sync_concurrency: most plain ``def`` tasks running at once (threads).
    :param wait_replicas: make every enqueue wait until this many replicas
        acknowledged it (``WAIT``); otherwise ``DurabilityUnconfirmed``.
    :param wait_fsync: also wait until the primary fsynced it to its AOF
        (``WAITAOF``; Redis >= 7.2 or Valkey, ``appendonly yes``).
    :param wait_timeout_s: how long an enqueue waits for those confirmations.
    :param redis_options: extra keyword arguments for ``redis.asyncio.Redis``
        (``ssl_ca_certs``, ``username``, ``password``…).
    :param queue_shards: queues spread over several shards (slots), by name:
        ``{"emails": 4}`` keeps ``emails`` in ``{emails#0}`` ... ``{emails#3}``,
        so one queue can use every primary of a Redis Cluster. The counts are
        stored in Redis when the app opens; processes that do not declare a
        queue use the stored count. A count can change only while the queue
        is empty (README, "Sharded queues").
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "aioqueue",
        queue: str = "default",
        worker: WorkerSettings | None = None,
        result_ttl_s: float = 86_400.0,
        dead_letter_ttl_s: float = 7 * 86_400.0,
        max_payload_bytes: int = 512 * 1024,
        retry: RetryPolicy | None = None,
        socket_timeout_s: float = 5.0,
        max_connections: int = 50,
        sync_concurrency: int = 40,
        redis_options: Mapping[str, Any] | None = None,
        wait_replicas: int = 0,
        wait_fsync: bool = False,
        wait_timeout_s: float = 1.0,
        queue_shards: Mapping[str, int] | None = None,
    ) -> None:
        check_name("prefix", prefix)
        check_name("queue", queue)
        if result_ttl_s <= 0 or dead_letter_ttl_s <= 0 or max_payload_bytes <= 0:
            raise ConfigurationError(
                "result_ttl_s, dead_letter_ttl_s and max_payload_bytes must be > 0")
        self.url = url or os.environ.get("AIOQUEUE_URL", "redis://localhost:6379/0")
        """The server URL (checked when set: ``ConfigurationError`` if malformed)."""
        self.prefix = prefix
        self.default_queue = queue
        self.worker_settings = worker or WorkerSettings()
        self.result_ttl_s = result_ttl_s
        self.dead_letter_ttl_s = dead_letter_ttl_s
        self.max_payload_bytes = max_payload_bytes
        self.default_retry = retry or RetryPolicy()
        self.queue_shards = check_shard_counts(queue_shards)
        """Shard counts declared in code (``broker.shards``: in effect once open)."""
        super().__init__()
        if sync_concurrency < 1:
            raise ConfigurationError("sync_concurrency must be >= 1")
        self.sync_concurrency = sync_concurrency
        self.backend = Backend(max_payload_bytes=max_payload_bytes,
                               result_ttl_ms=max(1, round(result_ttl_s * 1000)),
                               sync_concurrency=sync_concurrency)
        """What task, job and workflow handles use: broker, listener, limits."""
        self.state: dict[str, Any] = self.backend.state
        """Shared state for tasks (``ctx.state``), filled by ``on_startup`` hooks."""
        if wait_replicas < 0 or wait_timeout_s <= 0:
            raise ConfigurationError("wait_replicas must be >= 0 and wait_timeout_s > 0")
        self._broker_options = dict(
            socket_timeout_s=socket_timeout_s, max_connections=max_connections,
            redis_options=redis_options, wait_replicas=wait_replicas, wait_fsync=wait_fsync,
            wait_timeout_s=wait_timeout_s,
        )
        self._task_group: TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._listener_lock = anyio.Lock()
        self._listener_started = False

    @property
    def url(self) -> str:
        return self._url

    @url.setter
    def url(self, value: str) -> None:
        self._url = check_url(value)

    # -- connection -------------------------------------------------------

    @property
    def sync_limiter(self) -> anyio.CapacityLimiter:
        return self.backend.sync_limiter

    @property
    def is_open(self) -> bool:
        """True between ``open()`` (``async with app:``) and ``close()``."""
        return self.backend.is_open

    @property
    def broker(self) -> Broker:
        return self.backend.broker

    @property
    def results(self) -> ResultListener:
        return self.backend.results

    def make_broker(self, max_connections: int | None = None) -> Broker:
        options: dict[str, Any] = dict(self._broker_options)
        if max_connections is not None:
            options["max_connections"] = max(max_connections, options["max_connections"])
        return Broker(self.url, prefix=self.prefix, **options)

    async def open(self, *, max_connections: int | None = None) -> None:
        if self.backend.is_open:
            return
        stack = contextlib.AsyncExitStack()
        broker = self.make_broker(max_connections)
        stack.push_async_callback(broker.close)
        try:
            await broker.check_server()
            await open_shard_counts(broker, self.queue_shards)
            self._refuse_limits_on_shards(broker.shards)
            await _register_queues(broker, self.prefix,
                                   {self.default_queue, *(t.queue for t in self.tasks.values())})
            await self._declare_limits(broker)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            # stop the listener before the task group waits for it
            stack.callback(task_group.cancel_scope.cancel)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self.backend.attach(broker, _LazyListener(
            broker, self._ensure_listener,
            reconnect_cap_s=self.worker_settings.reconnect_cap_s))
        self._task_group = task_group

    def _refuse_limits_on_shards(self, shards: Mapping[str, int]) -> None:
        limited = {self.tasks[n].queue for n in (*self.rate_limits, *self.concurrency_limits,
                                                 *self.key_rate_limits)}
        limited |= set(self.queue_rate_limits)
        if limited & set(shards):
            raise ConfigurationError(
                f"rate limits and concurrency limits on sharded queues are not supported "
                f"({', '.join(sorted(limited & set(shards)))}): a limit lives in one slot")

    async def _declare_limits(self, broker: Broker) -> None:
        """Store the rate limits written in code (operators' overrides stay).
        Best effort, as the queue registry: limits stored before still apply."""
        try:
            await declare_app_limits(
                broker.lane, self.prefix,
                {n: (t.queue, self.rate_limits.get(n)) for n, t in self.tasks.items()},
                {q: self.queue_rate_limits.get(q)
                 for q in {*self.task_queues(), *self.queue_rate_limits}})
            await declare_app_concurrency(
                broker.lane, self.prefix,
                {n: (t.queue, self.concurrency_limits.get(n), self.key_rate_limits.get(n))
                 for n, t in self.tasks.items()})
        except AioqueueError as exc:
            log.warning("rate limits in code not stored (%s: %s)", type(exc).__name__, exc)

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        self.backend.detach()
        self._task_group = None
        self._listener_started = False
        if stack is not None:
            await stack.aclose()

    @contextlib.asynccontextmanager
    async def connected(self, *, max_connections: int | None = None) -> AsyncIterator[App]:
        """``async with app:`` with a larger pool (the supervisor sizes it)."""
        await self.open(max_connections=max_connections)
        try:
            yield self
        finally:
            await self.close()

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _ensure_listener(self, listener: ResultListener) -> None:
        if self._listener_started:
            return
        async with self._listener_lock:
            if not self._listener_started and self._task_group is not None:
                await self._task_group.start(listener.run)
                self._listener_started = True

    # -- producing --------------------------------------------------------

    async def enqueue(
        self,
        task_name: str,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> Job[Any]:
        """Enqueue by task name, for producers that do not import the task code.

        If the task is registered in this app its arguments are validated as
        with ``Task.enqueue``; otherwise they are stored as given (JSON) and
        validated by the worker. Per-call options: use :meth:`enqueue_with`.
        """
        return await self.enqueue_with(task_name, args, kwargs)

    async def enqueue_with(
        self,
        task_name: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: EnqueueOptions | None = None,
        **given: Unpack[EnqueueKwargs],
    ) -> Job[Any]:
        """Enqueue by task name with options (as ``Task.options``). Options not
        given take the registered task's defaults, or, for a task this app does
        not know, the app's (its default queue, priority 0) and the worker's.
        """
        call = (options or EnqueueOptions()).merged(EnqueueOptions(**given))
        kwargs = dict(kwargs or {})
        task = self.tasks.get(task_name)
        if task is not None:
            return await task.options(call).enqueue(*args, **kwargs)
        check_task_name(task_name)
        effective = EnqueueOptions(queue=self.default_queue).merged(call)
        payload = encode_untyped(args, kwargs)
        check_payload(task_name, payload, self.max_payload_bytes)
        job = prepare_job(task_name, payload, effective)
        target = str(effective.queue)
        job_id = await submit_job(self.backend, job, target)
        return Job(self.backend, job_id, target, enqueued=True)

    # -- operating --------------------------------------------------------

    async def dead_letters(
        self, queue: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[JobInfo]:
        """Dead-lettered jobs of a queue, oldest first, with their payload and
        every attempt's error and traceback."""
        return await dead_letters.dead_letters(
            self.broker, queue or self.default_queue, limit=limit, offset=offset)

    async def replay_dead(
        self, job_ids: Sequence[str] | None = None, *, queue: str | None = None,
        new_ids: bool = False,
    ) -> list[str]:
        """Give dead-lettered jobs fresh attempts: those given, or every job
        dead when the call begins (one that dies again meanwhile is not
        replayed again). With ``new_ids`` each is enqueued again as a new job
        and the dead one is purged; otherwise it runs again under its own id.
        Ids that are not dead-lettered are skipped.

        :returns: the ids that will run (the new ids with ``new_ids``).
        """
        queue = queue or self.default_queue
        if new_ids:
            return list((await dead_letters.replay_as_new(self.broker, queue, job_ids)).values())
        return await dead_letters.replay_in_place(self.broker, queue, job_ids)

    async def purge_dead(
        self, job_ids: Sequence[str] | None = None, *, queue: str | None = None
    ) -> int:
        """Delete dead-lettered jobs (all of them when ``job_ids`` is None)."""
        return await self.broker.purge_dead(queue or self.default_queue, job_ids)

    async def queue_info(self, queue: str | None = None) -> dict[str, int]:
        """Counts (waiting, running, scheduled, dead) and counters of a queue."""
        queue = queue or self.default_queue
        return {**await self.broker.counts(queue), **await self.broker.stats(queue)}

    def job(self, job_id: str, queue: str | None = None) -> Job[Any]:
        """A handle on an existing job, by id."""
        return Job(self.backend, job_id, queue or self.default_queue)


async def _register_queues(broker: Broker, prefix: str, queues: set[str]) -> None:
    """Add the app's queues to the queue registry ('aioqueue info' lists
    queues nobody names). Best effort: the registry is for operators, so a
    server that refuses it now (max clients, say) does not stop the app; a
    worker registers its queues again with its heartbeat."""
    try:
        await BrokerAdmin(broker.lane, prefix).register_queues(queues)
    except AioqueueError as exc:
        log.warning("queue registry not updated (%s: %s)", type(exc).__name__, exc)


class _LazyListener(ResultListener):
    """Starts the shared listener on first use, inside the app's task group."""

    def __init__(self, broker: Broker,
                 ensure_started: Callable[[ResultListener], Awaitable[None]],
                 *, reconnect_cap_s: float) -> None:
        super().__init__(broker, reconnect_cap_s=reconnect_cap_s)
        self._ensure_started = ensure_started

    @contextlib.asynccontextmanager
    async def watch(self, queue: str, job_id: str) -> AsyncIterator[Wakeup]:
        await self._ensure_started(self)
        async with super().watch(queue, job_id) as wakeup:
            yield wakeup
