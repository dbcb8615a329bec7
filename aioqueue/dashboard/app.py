"""The dashboard as an ASGI application (Starlette), built around an
:class:`aioqueue.App`.

Every page reads a bounded amount through the broker layer (a page of jobs,
a page of workers), whatever the size of the queues; every action is a POST
that needs an authenticated principal, a CSRF token and a same-origin
request, and is refused in read-only mode.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..app import App
from ..errors import AioqueueError
from .actions import ACTIONS
from .security import (
    SESSION_COOKIE,
    Authenticator,
    Forbidden,
    SecurityHeaders,
    TokenAuth,
    read_form,
)
from .state import Dashboard
from .views import PAGES, Action, Page, metrics_text

log = logging.getLogger("aioqueue.dashboard")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


def _page(dash: Dashboard, page: Page) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        principal = await dash.principal(request)
        if principal is None:
            base = request.scope.get("root_path", "").rstrip("/")
            return RedirectResponse(f"{base}/login", status_code=303)
        try:
            template, context = await page(dash, request)
        except (AioqueueError, ValueError) as exc:
            return dash.render(request, "error.html", principal, status_code=400,
                               message=str(exc))
        return dash.render(request, template, principal, **context)

    return endpoint


def _action(dash: Dashboard, action: Action) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        principal = await dash.principal(request)
        if principal is None:
            return Response("authentication required\n", status_code=401,
                            media_type="text/plain")
        try:
            if dash.read_only:
                raise Forbidden("the dashboard is read-only")
            form = await read_form(request)
            dash.csrf.check(request, principal, form)
            back = await action(dash, form)
        except Forbidden as exc:
            return Response(f"{exc}\n", status_code=403, media_type="text/plain")
        except (AioqueueError, ValueError) as exc:
            return dash.render(request, "error.html", principal, status_code=400,
                               message=str(exc))
        log.info("dashboard action by %s: %s %s", principal, request.url.path,
                 {k: v for k, v in form.items() if k != "csrf"})
        base = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(base + back, status_code=303)

    return endpoint


async def _login_page(dash: Dashboard, request: Request) -> Response:
    if request.method == "GET":
        return dash.render(request, "login.html", "", failed=False)
    form = await read_form(request)
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return Response("cross-site login refused\n", status_code=403, media_type="text/plain")
    assert isinstance(dash.auth, TokenAuth)
    if not dash.auth.matches(form.get("token", "")):
        return dash.render(request, "login.html", "", status_code=401, failed=True)
    base = request.scope.get("root_path", "").rstrip("/")
    response = RedirectResponse(f"{base}/", status_code=303)
    response.set_cookie(SESSION_COOKIE, dash.auth.session_value, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https",
                        path=base or "/")
    return response


def _authenticator(token: str | None, auth: Authenticator | None) -> Authenticator | None:
    if token is not None:
        if auth is not REQUIRED:
            raise ValueError("give a token or auth, not both")
        return TokenAuth(token)
    if auth is REQUIRED:
        raise ValueError("the dashboard needs token=... or auth=...; "
                         "auth=None disables authentication explicitly")
    return auth


def create_dashboard(
    app: App,
    *,
    token: str | None = None,
    auth: Authenticator | None = REQUIRED,
    read_only: bool = False,
    title: str = "aioqueue",
    open_app: bool = False,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI application.

    :param token: a shared secret (>= 16 characters) for the built-in login.
    :param auth: or the host's own check: ``async def auth(request) -> str | None``
        returning who is asking (None: refused). Pass ``auth=None`` to run
        without authentication (only behind something that authenticates).
    :param read_only: show no actions and refuse every POST.
    :param open_app: open ``app`` in the dashboard's lifespan (standalone); a
        host application that already opens it leaves this False. Starlette
        does not run a mounted sub-application's lifespan.
    """
    authenticator = _authenticator(token, auth)
    dash = Dashboard(app, authenticator, read_only, title)
    routes: list[Any] = [Route(path, _page(dash, page), name=name)
                         for name, (path, page) in PAGES.items()]
    routes += [Route(path, _action(dash, action), methods=["POST"])
               for path, action in ACTIONS.items()]
    if isinstance(authenticator, TokenAuth):
        async def login(request: Request) -> Response:
            return await _login_page(dash, request)

        async def logout(request: Request) -> Response:
            base = request.scope.get("root_path", "").rstrip("/")
            response = RedirectResponse(f"{base}/login", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path=base or "/")
            return response

        routes += [Route("/login", login, methods=["GET", "POST"]),
                   Route("/logout", logout, methods=["POST"])]
    async def metrics(request: Request) -> Response:
        if await dash.principal(request) is None:
            return Response("authentication required\n", status_code=401,
                            media_type="text/plain")
        try:
            body = await metrics_text(dash)
        except ImportError:
            return Response("metrics need: pip install 'aioqueue[metrics]'\n",
                            status_code=501, media_type="text/plain")
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    routes.append(Route("/metrics", metrics))
    routes.append(Mount("/static", StaticFiles(packages=[("aioqueue.dashboard", "static")]),
                        name="static"))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if open_app:
            async with app:
                yield
        else:
            yield

    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(SecurityHeaders)])
