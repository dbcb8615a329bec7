"""The form of a server URL, checked when it is given (``App(url)``,
``app.url = ...``, ``--url``), so a typo is one clear error, not a traceback
from the first connection."""

from __future__ import annotations

from urllib.parse import urlsplit

from .connection_cluster import ClusterURL, is_cluster_url
from .connection_sentinel import SentinelURL, is_sentinel_url
from .errors import ConfigurationError

PLAIN_SCHEMES = ("redis", "rediss", "unix")
"""Schemes redis-py reads; ``redis+sentinel://`` and ``redis+cluster://``
(and their ``rediss+`` forms) are checked by their own parsers."""

EXAMPLES = ("redis://host:6379/0, rediss://host:6380/0, unix:///path/redis.sock?db=0, "
            "redis+sentinel://..., redis+cluster://...")


def check_url(url: str) -> str:
    """Return ``url`` if it has the form of a server URL.

    :raises ConfigurationError: an unknown scheme, or a database that is not a
        number (the message never repeats the URL's password).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"the server URL must be a string, got {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    base = scheme.split("+", 1)[0]
    if not sep or base not in PLAIN_SCHEMES or (scheme != base and base == "unix"):
        shown = f"{scheme}://..." if sep else repr(url[:40])
        raise ConfigurationError(f"not a Redis URL: {shown} (examples: {EXAMPLES})")
    if is_cluster_url(url):
        ClusterURL.parse(url)
    elif is_sentinel_url(url):
        SentinelURL.parse(url)
    elif scheme in ("redis", "rediss"):
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL ({scheme}://...): {exc}") from None
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ConfigurationError(
                f"the database in a Redis URL is a number (redis://host:6379/0), "
                f"got {database!r}")
    return url
