"""Any ASGI application without lifespan support of its own (Django): a
wrapper that opens the app when the server starts and closes it when the
server stops.

```python
# asgi.py of a Django project
from django.core.asgi import get_asgi_application
from aioqueue.integrations.asgi import with_lifespan
from myproject.tasks import app

application = with_lifespan(get_asgi_application(), app)
```

Run it with an ASGI server that sends lifespan events (uvicorn, hypercorn,
daphne >= 4 do by default).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from ..app import App

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
AnyASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
"""Frameworks type the three arguments each their own way (Django: dict and
Mapping): any three-argument ASGI callable is accepted."""


def with_lifespan(asgi_app: AnyASGIApp, queue_app: App) -> ASGIApp:
    """``asgi_app`` with ``queue_app`` open from the server's start to its
    stop. Lifespan messages are answered here; all else goes to ``asgi_app``.
    A failure to open (no server, wrong password) fails the start-up with
    the error's message, so the server does not start half-working."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await asgi_app(scope, receive, send)
            return
        await _lifespan(queue_app, receive, send)

    return application


async def _lifespan(queue_app: App, receive: Receive, send: Send) -> None:
    await receive()  # lifespan.startup
    started = False
    try:
        async with queue_app:
            started = True
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
    except Exception as exc:
        failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
        await send({"type": failed, "message": f"aioqueue: {type(exc).__name__}: {exc}"})
        return
    await send({"type": "lifespan.shutdown.complete"})


@contextlib.asynccontextmanager
async def lifespan_events(asgi_app: AnyASGIApp) -> AsyncIterator[None]:
    """Send ``asgi_app`` the lifespan events an ASGI server would: start-up on
    entry, shutdown on exit. For tests and scripts that call an ASGI
    application in-process (``httpx.ASGITransport`` sends none).

    :raises RuntimeError: the application's start-up failed (with its message).
    """
    to_app, app_inbox = anyio.create_memory_object_stream[Message](2)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](2)

    async def serve() -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": {}}
        await asgi_app(scope, app_inbox.receive, app_outbox.send)

    failure: str | None = None
    async with anyio.create_task_group() as tg, to_app, from_app:
        tg.start_soon(serve)
        await to_app.send({"type": "lifespan.startup"})
        reply = await from_app.receive()
        if reply["type"] != "lifespan.startup.complete":
            failure = str(reply.get("message") or reply["type"])
            tg.cancel_scope.cancel()
        else:
            try:
                yield
            finally:
                await to_app.send({"type": "lifespan.shutdown"})
                reply = await from_app.receive()
                if reply["type"] != "lifespan.shutdown.complete":
                    failure = str(reply.get("message") or reply["type"])
    if failure is not None:
        raise RuntimeError(failure)
