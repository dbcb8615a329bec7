"""aiohttp: open the app with the web application (``cleanup_ctx``) and reach
it from handlers.

```python
from aiohttp import web
from aioqueue.integrations.aiohttp import cleanup_ctx, get_app

web_app = web.Application()
web_app.cleanup_ctx.append(cleanup_ctx(app))

async def start(request: web.Request) -> web.Response:
    job = await build_report.enqueue()
    return web.json_response({"id": job.id})
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ..app import App
from ._holder import held_open

APP_KEY: web.AppKey[App] = web.AppKey("aioqueue", App)
"""Where `cleanup_ctx` puts the open app: ``web_app[APP_KEY]``."""


def cleanup_ctx(queue_app: App) -> Callable[[web.Application], AsyncIterator[None]]:
    """For ``web_app.cleanup_ctx.append(...)``: opens ``queue_app`` at start-up
    and closes it at clean-up.

    aiohttp may run start-up and clean-up in different tasks, while an open
    app holds a task group that must be left by the task that entered it, so
    the app is held open by a task of its own, awaited at clean-up.
    """

    async def ctx(web_app: web.Application) -> AsyncIterator[None]:
        async with held_open(queue_app) as opened:
            web_app[APP_KEY] = opened
            yield

    return ctx


def get_app(request: web.Request) -> App:
    """The open app, from a handler."""
    return request.app[APP_KEY]
