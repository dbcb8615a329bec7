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

from typing import Any

from .connection import Connection
from .connection_cluster import ClusterConnection, is_cluster_url
from .connection_sentinel import SentinelConnection, is_sentinel_url


def connect(url: str, **options: Any) -> Connection:
    """The :class:`~aioqueue.connection.Connection` for ``url`` (options as
    :class:`~aioqueue.connection.Connection` takes them)."""
    if is_cluster_url(url):
        return ClusterConnection(url, **options)
    if is_sentinel_url(url):
        return SentinelConnection(url, **options)
    return Connection(url, **options)
