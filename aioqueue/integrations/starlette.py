"""FastAPI and Starlette: open the app with the web server (lifespan) and hand
it to endpoints (``Depends(aioqueue_app)``).

```python
from fastapi import Depends, FastAPI
from aioqueue.integrations.starlette import aioqueue_app, lifespan

api = FastAPI(lifespan=lifespan(app))

@api.post("/reports")
async def start(queue: aioqueue.App = Depends(aioqueue_app)) -> dict[str, str]:
    job = await build_report.enqueue()
    return {"id": job.id}
```
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import HTTPConnection

from ..app import App
from ..errors import ConfigurationError

STATE_ATTRIBUTE = "aioqueue"
"""Where the lifespan puts the app: ``asgi_app.state.aioqueue``."""


def lifespan(
    queue_app: App,
    inner: Callable[[Any], contextlib.AbstractAsyncContextManager[Any]] | None = None,
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]:
    """A lifespan that opens ``queue_app`` when the server starts and closes
    it when the server stops; pass your own lifespan as ``inner`` to run it
    inside (the app is open while it runs). Whatever ``inner`` yields is the
    lifespan's state."""

    @contextlib.asynccontextmanager
    async def run(asgi_app: Any) -> AsyncIterator[Any]:
        async with queue_app:
            setattr(asgi_app.state, STATE_ATTRIBUTE, queue_app)
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(asgi_app) as state:
                        yield state
            finally:
                delattr(asgi_app.state, STATE_ATTRIBUTE)

    return run


def aioqueue_app(connection: HTTPConnection) -> App:
    """The open app, for ``Depends(aioqueue_app)`` (HTTP and WebSocket)."""
    queue_app = getattr(connection.app.state, STATE_ATTRIBUTE, None)
    if not isinstance(queue_app, App):
        raise ConfigurationError(
            "no aioqueue app on this application: create it with "
            "FastAPI(lifespan=aioqueue.integrations.starlette.lifespan(app))")
    return queue_app
