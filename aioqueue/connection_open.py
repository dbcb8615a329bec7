"""The one place that picks a transport by URL scheme.

* ``redis://``, ``rediss://``, ``unix://``: one server (:mod:`aioqueue.connection`);
* ``redis+cluster://``, ``rediss+cluster://``: a Redis Cluster
  (:mod:`aioqueue.connection_cluster`);
* ``redis+sentinel://``, ``rediss+sentinel://``: the primary a set of
  Sentinels names (:mod:`aioqueue.connection_sentinel`).

It is a module of its own so that the transports may build on
:class:`~aioqueue.connection.Connection` without an import cycle.
"""

from __future__ import annotations

import functools
from typing import Any

from .connection import Connection
from .connection_cluster import ClusterConnection, is_cluster_url
from .connection_sentinel import SentinelConnection, is_sentinel_url


def connect(url: str, **options: Any) -> Connection:
    """The :class:`~aioqueue.connection.Connection` for ``url`` (options as
    :class:`~aioqueue.connection.Connection` takes them)."""
    redis_options = dict(options.get("redis_options") or {})
    if not {"driver_info", "lib_name", "lib_version"} & redis_options.keys():
        info = driver_info()
        if info is not None:
            redis_options["driver_info"] = info
    options["redis_options"] = redis_options
    if is_cluster_url(url):
        return ClusterConnection(url, **options)
    if is_sentinel_url(url):
        return SentinelConnection(url, **options)
    return Connection(url, **options)


@functools.cache
def driver_info() -> Any:
    """What aioqueue's connections tell the server in ``CLIENT SETINFO``:
    ``lib-name redis-py(aioqueue_v<version>)``, so ``CLIENT LIST`` shows
    which clients are aioqueue's. Made once: without it redis-py looks its
    own version up in the installed metadata for every new connection
    (~0.8 ms each). None with a redis-py that has no ``DriverInfo``."""
    try:
        import redis
        from redis.driver_info import DriverInfo
    except ImportError:
        return None
    from . import __version__

    return DriverInfo(lib_version=redis.__version__).add_upstream_driver("aioqueue",
                                                                          __version__)
