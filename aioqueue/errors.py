"""Every exception aioqueue raises, in one tree.

::

    AioqueueError
    ├── ConfigurationError        bad option values, duplicate task names, bad settings
    ├── TaskNotFound              enqueue by a name no task is registered under
    ├── PayloadError
    │   ├── PayloadTooLarge       serialised arguments over the app's limit (nothing written)
    │   └── PayloadNotSerializable  arguments or a result that JSON cannot carry
    ├── BrokerError
    │   ├── RedisUnavailable      cannot reach Redis (after the client's bounded retries)
    │   ├── UnsupportedServer     server too old or without BLMOVE (names the version found)
    │   ├── RedisOutOfMemory      the server refused a write (maxmemory with noeviction)
    │   ├── MalformedJobRecord    a record in Redis that aioqueue cannot parse
    │   ├── WrongKeyType          a queue key holds another type (WRONGTYPE): not ours
    │   ├── RedisAuthError        wrong or missing username/password
    │   ├── RedisPermissionDenied an ACL user lacks a command, key or channel
    │   └── DurabilityUnconfirmed the write was made but replication/fsync was not
    │                             confirmed in time: its outcome on failover is unknown
    ├── JobError
    │   ├── JobFailed             the job ended dead-lettered; carries type, message, traceback
    │   ├── JobCancelled          the job was cancelled
    │   ├── JobNotFound           no record: never enqueued, or its result TTL passed
    │   │   └── ResultExpired     the job was enqueued by this handle; its record expired
    │   └── ResultTimeout         ``result(timeout=)`` ran out (also a ``TimeoutError``)
    └── Retry                     raised by task code to ask for a retry (not an error)

``pydantic.ValidationError`` is raised unchanged when task arguments fail
validation at enqueue: it is the error users of pydantic already know.
"""

from __future__ import annotations


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


class RedisUnavailable(BrokerError, ConnectionError):
    """Redis cannot be reached."""


class UnsupportedServer(BrokerError):
    """The server lacks a command aioqueue needs (BLMOVE, Redis >= 6.2)."""


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
