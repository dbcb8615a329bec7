"""aioqueue: a reliable, typed asyncio task queue on Redis."""

from __future__ import annotations

import logging

from .app import App as App
from .context import JobContext as JobContext
from .errors import AioqueueError as AioqueueError
from .errors import BrokerError as BrokerError
from .errors import ConfigurationError as ConfigurationError
from .errors import DurabilityUnconfirmed as DurabilityUnconfirmed
from .errors import ErrorKind as ErrorKind
from .errors import JobCancelled as JobCancelled
from .errors import JobError as JobError
from .errors import JobFailed as JobFailed
from .errors import JobIdConflict as JobIdConflict
from .errors import JobNotFound as JobNotFound
from .errors import MalformedJobRecord as MalformedJobRecord
from .errors import PayloadError as PayloadError
from .errors import PayloadNotSerializable as PayloadNotSerializable
from .errors import PayloadTooLarge as PayloadTooLarge
from .errors import RedisAuthError as RedisAuthError
from .errors import RedisBusy as RedisBusy
from .errors import RedisClusterUnavailable as RedisClusterUnavailable
from .errors import RedisCommandError as RedisCommandError
from .errors import RedisLoading as RedisLoading
from .errors import RedisOutOfMemory as RedisOutOfMemory
from .errors import RedisPermissionDenied as RedisPermissionDenied
from .errors import RedisReadOnly as RedisReadOnly
from .errors import RedisTransientError as RedisTransientError
from .errors import RedisUnavailable as RedisUnavailable
from .errors import ResultExpired as ResultExpired
from .errors import ResultTimeout as ResultTimeout
from .errors import Retry as Retry
from .errors import ScriptCacheLost as ScriptCacheLost
from .errors import TaskNotFound as TaskNotFound
from .errors import UnsupportedServer as UnsupportedServer
from .errors import WorkerStopped as WorkerStopped
from .errors import WrongKeyType as WrongKeyType
from .errors import classify as classify
from .flow import RateLimit as RateLimit
from .flow import RateLimited as RateLimited
from .job import CancelOutcome as CancelOutcome
from .job import Job as Job
from .job import JobEvent as JobEvent
from .job import gather as gather
from .options import UNSET as UNSET
from .options import EnqueueOptions as EnqueueOptions
from .record import JobInfo as JobInfo
from .record import JobStatus as JobStatus
from .record import Progress as Progress
from .retry import RetryPolicy as RetryPolicy
from .schedule import Schedule as Schedule
from .settings import WorkerSettings as WorkerSettings
from .supervisor import Supervisor as Supervisor
from .task import BoundCall as BoundCall
from .task import Signature as Signature
from .task import Task as Task
from .workflow import Chain as Chain
from .workflow import Chord as Chord
from .workflow import Group as Group
from .workflow import Workflow as Workflow
from .workflow import chain as chain
from .workflow import chord as chord
from .workflow import group as group

__version__ = "0.1.0"

__all__ = [
    "AioqueueError",
    "App",
    "BoundCall",
    "BrokerError",
    "CancelOutcome",
    "Chain",
    "Chord",
    "ConfigurationError",
    "DurabilityUnconfirmed",
    "EnqueueOptions",
    "ErrorKind",
    "Group",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobEvent",
    "JobFailed",
    "JobIdConflict",
    "JobInfo",
    "JobNotFound",
    "JobStatus",
    "MalformedJobRecord",
    "PayloadError",
    "PayloadNotSerializable",
    "PayloadTooLarge",
    "Progress",
    "RateLimit",
    "RateLimited",
    "RedisAuthError",
    "RedisBusy",
    "RedisClusterUnavailable",
    "RedisCommandError",
    "RedisLoading",
    "RedisOutOfMemory",
    "RedisPermissionDenied",
    "RedisReadOnly",
    "RedisTransientError",
    "RedisUnavailable",
    "ResultExpired",
    "ResultTimeout",
    "Retry",
    "RetryPolicy",
    "Schedule",
    "ScriptCacheLost",
    "Signature",
    "Supervisor",
    "Task",
    "TaskNotFound",
    "UNSET",
    "UnsupportedServer",
    "WorkerSettings",
    "WorkerStopped",
    "Workflow",
    "WrongKeyType",
    "chain",
    "chord",
    "classify",
    "gather",
    "group",
]

logging.getLogger("aioqueue").addHandler(logging.NullHandler())
