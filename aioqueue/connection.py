"""The broker layer's connection side: redaction and the one translation of
redis-py's errors into aioqueue's typed tree (see :mod:`aioqueue.errors`).

Every broker call runs inside :func:`translate_errors`, so callers only ever
see aioqueue exceptions, and :func:`aioqueue.errors.classify` decides what is
transient from those types alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis import exceptions as redis_errors

from .errors import (
    AioqueueError,
    BrokerError,
    RedisAuthError,
    RedisBusy,
    RedisClusterUnavailable,
    RedisCommandError,
    RedisLoading,
    RedisOutOfMemory,
    RedisPermissionDenied,
    RedisReadOnly,
    RedisUnavailable,
    ScriptCacheLost,
    WrongKeyType,
    register_translation,
)

# The first word of an error reply, for the replies redis-py leaves as a plain
# ResponseError (BUSY) or that arrive wrapped by a script (codes are kept).
_REPLY_CODES: dict[str, type[BrokerError]] = {
    "BUSY": RedisBusy,
    "LOADING": RedisLoading,
    "READONLY": RedisReadOnly,
    "MASTERDOWN": RedisReadOnly,
    "MOVED": RedisClusterUnavailable,
    "ASK": RedisClusterUnavailable,
    "TRYAGAIN": RedisClusterUnavailable,
    "CLUSTERDOWN": RedisClusterUnavailable,
    "OOM": RedisOutOfMemory,
    "WRONGTYPE": WrongKeyType,
    "NOAUTH": RedisAuthError,
    "WRONGPASS": RedisAuthError,
    "NOPERM": RedisPermissionDenied,
    "NOSCRIPT": ScriptCacheLost,
}

# redis-py's own classes for the codes it recognises (it strips the code from
# the message). Order matters: subclasses before their bases.
_CLASSES: tuple[tuple[type[BaseException], type[BrokerError]], ...] = (
    (redis_errors.AuthenticationError, RedisAuthError),
    (redis_errors.AuthenticationWrongNumberOfArgsError, RedisAuthError),
    (redis_errors.AuthorizationError, RedisPermissionDenied),
    (redis_errors.NoPermissionError, RedisPermissionDenied),
    (redis_errors.BusyLoadingError, RedisLoading),
    (redis_errors.ReadOnlyError, RedisReadOnly),
    (redis_errors.MasterDownError, RedisReadOnly),
    (redis_errors.ClusterDownError, RedisClusterUnavailable),
    (redis_errors.TryAgainError, RedisClusterUnavailable),
    (redis_errors.AskError, RedisClusterUnavailable),  # MovedError too
    (redis_errors.OutOfMemoryError, RedisOutOfMemory),
    (redis_errors.NoScriptError, ScriptCacheLost),
    (redis_errors.ConnectionError, RedisUnavailable),
    (redis_errors.TimeoutError, RedisUnavailable),
    (redis_errors.InvalidResponse, RedisUnavailable),
)

_MESSAGES: dict[type[BrokerError], str] = {
    RedisBusy: "Redis is busy running a script",
    RedisLoading: "Redis is loading its data set",
    RedisReadOnly: "Redis refused a write: the server is a read-only replica",
    RedisClusterUnavailable: "Redis Cluster redirected or refused the call",
    RedisOutOfMemory: "Redis refused the write",
    WrongKeyType: "a key holds the wrong type of value for aioqueue (was it written by "
                  "something else?)",
    RedisAuthError: "Redis refused the credentials",
    RedisPermissionDenied: "Redis denied a command",
    ScriptCacheLost: "Redis lost the script again after every reload",
    RedisUnavailable: "cannot reach Redis",
    RedisCommandError: "Redis answered with an error",
}


def _kind_of(exc: BaseException) -> type[BrokerError]:
    for client_class, ours in _CLASSES:
        if isinstance(exc, client_class):
            return ours
    if isinstance(exc, OSError | TimeoutError):
        return RedisUnavailable
    if isinstance(exc, redis_errors.ResponseError):
        code = str(exc).split(" ", 1)[0]
        return _REPLY_CODES.get(code, RedisCommandError)
    return RedisCommandError


def translate(exc: BaseException, where: str = "") -> BaseException:
    """The aioqueue error for ``exc``: a redis-py error (or a socket error or
    timeout) becomes its typed counterpart, with ``where`` (e.g. a queue's key
    prefix) in the message; anything else is returned unchanged."""
    if isinstance(exc, AioqueueError) or not isinstance(
            exc, redis_errors.RedisError | OSError | TimeoutError):
        return exc
    kind = _kind_of(exc)
    at = f" ({where})" if where else ""
    error = kind(f"{_MESSAGES[kind]}{at}: {exc}")
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def translate_errors(where: str = "") -> Iterator[None]:
    """Run a block of Redis calls; redis-py's errors leave it translated."""
    try:
        yield
    except (redis_errors.RedisError, OSError, TimeoutError) as exc:
        translated = translate(exc, where)
        if translated is exc:
            raise  # already ours (RedisUnavailable is an OSError too)
        raise translated from exc


def redact(url: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, hostpart = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in creds else user}@{hostpart}"


register_translation(translate)
