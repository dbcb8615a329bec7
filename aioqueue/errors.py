"""Every exception aioqueue raises, in one tree.

::

    AioqueueError
    ├── ConfigurationError        bad option values, duplicate task names, bad settings
    ├── TaskNotFound              enqueue by a name no task is registered under
    ├── PayloadError
    │   ├── PayloadTooLarge       serialised arguments over the app's limit (nothing written)
    │   └── PayloadNotSerializable  arguments or a result that JSON cannot carry
    ├── BrokerError
    │   ├── RedisTransientError   transient: the same call can succeed later
    │   │   ├── RedisUnavailable  cannot reach Redis (after the client's bounded retries)
    │   │   ├── RedisBusy         BUSY: a script (someone's) runs past busy-reply-threshold
    │   │   ├── RedisLoading      LOADING: the server is loading its data set
    │   │   ├── RedisReadOnly     READONLY / MASTERDOWN: a replica (e.g. after a failover)
    │   │   └── RedisClusterUnavailable  MOVED / ASK / TRYAGAIN / CLUSTERDOWN
    │   ├── RedisOutOfMemory      the server refused a write (maxmemory with noeviction);
    │   │                         transient only where the caller says so (settle paths)
    │   ├── UnsupportedServer     server too old (names the version found)
    │   ├── MalformedJobRecord    a record in Redis that aioqueue cannot parse
    │   ├── WrongKeyType          a queue key holds another type (WRONGTYPE): not ours
    │   ├── RedisAuthError        wrong or missing username/password
    │   ├── RedisPermissionDenied an ACL user lacks a command, key or channel
    │   ├── ScriptCacheLost       NOSCRIPT again after every reload
    │   ├── RedisCommandError     any other error reply (a script failed, a bad command)
    │   └── DurabilityUnconfirmed the write was made but replication/fsync was not
    │                             confirmed in time: its outcome on failover is unknown
    ├── WorkerStopped             a worker role met a permanent error and stopped the worker
    ├── JobError
    │   ├── JobFailed             the job ended dead-lettered; carries type, message, traceback
    │   ├── JobCancelled          the job was cancelled
    │   ├── JobNotFound           no record: never enqueued, or its result TTL passed
    │   │   └── ResultExpired     the job was enqueued by this handle; its record expired
    │   └── ResultTimeout         ``result(timeout=)`` ran out (also a ``TimeoutError``)
    └── Retry                     raised by task code to ask for a retry (not an error)

``pydantic.ValidationError`` is raised unchanged when task arguments fail
validation at enqueue: it is the error users of pydantic already know.

:func:`classify` is the one place that decides whether an error is
transient (back off and try again) or permanent (stop, with one clear line).
The broker layer translates every redis-py error into this tree, so no
caller ever sees a redis-py exception.
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class AioqueueError(Exception):
    """Base class of every aioqueue exception."""


class ConfigurationError(AioqueueError, ValueError):
    """An option, setting or task definition is invalid."""


class TaskNotFound(AioqueueError, LookupError):
    """No task is registered under the given name."""


class PayloadError(AioqueueError):
    """Task arguments or results cannot be carried as a job payload."""


class PayloadTooLarge(PayloadError):
    """The serialised payload is larger than the app's ``max_payload_bytes``."""


class PayloadNotSerializable(PayloadError, TypeError):
    """A value cannot be represented as JSON."""


class BrokerError(AioqueueError):
    """A problem talking to Redis."""


class RedisTransientError(BrokerError):
    """Redis cannot serve the call now, but the same call can succeed later:
    back off and retry (every aioqueue script is idempotent or fenced)."""


class RedisUnavailable(RedisTransientError, ConnectionError):
    """Redis cannot be reached (refused, reset, timed out)."""


class RedisBusy(RedisTransientError):
    """BUSY: the server is running a script (ours or another client's) for
    longer than ``busy-reply-threshold`` and answers nothing else meanwhile."""


class RedisLoading(RedisTransientError):
    """LOADING: the server is loading its data set (after a restart)."""


class RedisReadOnly(RedisTransientError):
    """READONLY or MASTERDOWN: the server is a replica (a failover moved the
    primary, or the URL names a replica); writes fail until it is a primary."""


class RedisClusterUnavailable(RedisTransientError):
    """MOVED, ASK, TRYAGAIN or CLUSTERDOWN: aioqueue does not route Redis
    Cluster slots yet; the call is retried while the cluster settles."""


class UnsupportedServer(BrokerError):
    """The server lacks what aioqueue needs (Redis >= 6.2 or Valkey)."""


class ScriptCacheLost(BrokerError):
    """The server answered NOSCRIPT again after every reload of the script."""


class RedisCommandError(BrokerError):
    """Redis answered with an error aioqueue has no other name for (a script
    failed, a command was renamed or refused)."""


class RedisOutOfMemory(BrokerError):
    """Redis refused a write because it is at ``maxmemory`` (policy ``noeviction``).

    Raised by ``Task.enqueue_many``, it says exactly what was written: each
    chunk is written whole or not at all, ``written_ids`` are the jobs of the
    chunks written before the refusal and ``unwritten_ids`` the rest
    (enqueueing those again later is safe: their ids are fixed)."""

    written_ids: tuple[str, ...] = ()
    unwritten_ids: tuple[str, ...] = ()


class MalformedJobRecord(BrokerError):
    """A job record in Redis is missing fields or holds data aioqueue cannot parse."""


class JobError(AioqueueError):
    """The outcome of a job is not a result."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailed(JobError):
    """The job failed for good (dead-lettered).

    The original exception is never re-created: its type name, message and
    traceback are kept as text.
    """

    def __init__(
        self,
        *,
        job_id: str,
        error_type: str,
        message: str,
        traceback: str,
        attempts: int,
    ) -> None:
        super().__init__(f"job {job_id} failed after {attempts} attempt(s): "
                         f"{error_type}: {message}", job_id=job_id)
        self.error_type = error_type
        self.error_message = message
        self.traceback = traceback
        self.attempts = attempts


class JobCancelled(JobError):
    """The job was cancelled before it produced a result."""


class JobNotFound(JobError, LookupError):
    """No record of the job: it was never enqueued, or its record expired."""


class ResultExpired(JobNotFound):
    """The job was enqueued (by this handle) but its record and result expired
    after their TTL."""


class ResultTimeout(JobError, TimeoutError):
    """The job did not finish within the time ``result()`` was given."""


class Retry(AioqueueError):
    """Raise from a task to ask for another attempt after ``delay`` seconds.

    The attempt counts towards ``max_tries`` but is not logged as an error.
    """

    def __init__(self, delay: float | None = None) -> None:
        super().__init__(f"retry requested (delay={delay})")
        self.delay = delay


class WrongKeyType(BrokerError):
    """A key of a queue holds another type of value than aioqueue keeps there
    (Redis answered WRONGTYPE): something else wrote it."""


class RedisAuthError(BrokerError):
    """Redis refused the credentials (wrong or missing username or password)."""


class RedisPermissionDenied(BrokerError):
    """Redis denied a command, key or channel to this ACL user (NOPERM)."""


class DurabilityUnconfirmed(BrokerError):
    """``App(wait_replicas=, wait_fsync=)``: the enqueue was written but not
    confirmed by enough replicas (or fsyncs) in time. The job exists on the
    primary and will run unless a failover loses it: the outcome is unknown.
    Enqueueing again with the same job id is safe (enqueue is idempotent)."""

    def __init__(self, message: str, *, job_ids: list[str]) -> None:
        super().__init__(message)
        self.job_ids = job_ids


class JobIdConflict(JobError, ValueError):
    """A job id given at enqueue already names a job of another task (ids are
    per queue; enqueueing the same task under an existing id is a no-op)."""


class WorkerStopped(AioqueueError):
    """A worker role met a permanent error (see :func:`classify`) and stopped
    the worker. ``role`` names the loop; the original error is the cause."""

    def __init__(self, message: str, *, role: str) -> None:
        super().__init__(message)
        self.role = role


class ErrorKind(enum.Enum):
    """What a loop does about an error: retry it later, or stop."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


# The broker layer registers its translation of client-library errors here,
# so that a client error that escaped translation is still classified by the
# same rules (errors.py itself imports no client library).
_foreign: list[Callable[[BaseException], BaseException]] = []


def register_translation(translate: Callable[[BaseException], BaseException]) -> None:
    """Called once by the broker layer with its error translation."""
    if translate not in _foreign:
        _foreign.append(translate)


def translated(exc: BaseException) -> BaseException:
    """``exc`` as an aioqueue error if it is a client-library error that
    escaped the broker layer's translation; otherwise ``exc`` itself."""
    if not isinstance(exc, AioqueueError):
        for translate in _foreign:
            exc = translate(exc)
    return exc


def refused_by_server(exc: BaseException) -> bool:
    """Whether Redis answered the call itself with an error reply (a script
    refused its arguments or failed, WRONGTYPE): the same call fails again,
    but a smaller one (one job of a batch) may not. Permanent for
    :func:`classify`."""
    return isinstance(translated(exc), RedisCommandError | WrongKeyType)


def classify(exc: BaseException, *, oom_transient: bool = False) -> ErrorKind:
    """The one error policy: is ``exc`` worth retrying?

    Transient: :class:`RedisTransientError` (lost connections, timeouts,
    BUSY, LOADING, READONLY, MASTERDOWN, MOVED/ASK, TRYAGAIN, CLUSTERDOWN),
    ``OSError`` and ``TimeoutError``, and :class:`RedisOutOfMemory` when
    ``oom_transient`` (paths that settle or keep work already in Redis: they
    run with ``allow-oom`` and must keep trying). Everything else is
    permanent: credentials, ACLs, WRONGTYPE, NOSCRIPT after reloads, an
    unsupported server, configuration errors, and any error aioqueue does
    not know (a bug must stop the worker with one clear line, not loop).
    """
    exc = translated(exc)
    if isinstance(exc, RedisOutOfMemory):
        return ErrorKind.TRANSIENT if oom_transient else ErrorKind.PERMANENT
    if isinstance(exc, RedisTransientError):
        return ErrorKind.TRANSIENT
    if isinstance(exc, AioqueueError):
        return ErrorKind.PERMANENT
    if isinstance(exc, OSError | TimeoutError):
        return ErrorKind.TRANSIENT
    return ErrorKind.PERMANENT
