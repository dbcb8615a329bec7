"""The state the dashboard's handlers share: the app, auth, CSRF and the
templates."""

from __future__ import annotations

import json
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..app import App
from ..broker_admin import BrokerAdmin
from ..broker_groups import ConcurrencyLimits
from ..broker_workers import WorkerRegistry, WorkerState
from .format import when
from .security import Authenticator, Csrf, TokenAuth


class Dashboard:
    """State shared by the handlers: the app, auth, CSRF and templates."""

    def __init__(self, app: App, auth: Authenticator | None, read_only: bool,
                 title: str) -> None:
        self.app = app
        self.auth = auth
        self.read_only = read_only
        self.title = title
        self.csrf = Csrf()
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("aioqueue.dashboard", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined)
        self.env.filters["when"] = when
        self.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False)

    @property
    def admin(self) -> BrokerAdmin:
        return BrokerAdmin(self.app.broker.lane, self.app.prefix, self.app.broker.shards)

    @property
    def limits(self) -> ConcurrencyLimits:
        return ConcurrencyLimits(self.app.broker.lane, self.app.prefix)

    @property
    def workers(self) -> WorkerRegistry:
        return WorkerRegistry(self.app.broker.lane, self.app.prefix)

    async def principal(self, request: Request) -> str | None:
        if self.auth is None:
            return "anonymous"
        return await self.auth(request)

    def render(self, request: Request, template: str, principal: str,
               status_code: int = 200, **context: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        html = self.env.get_template(template).render(
            base=base, title=self.title, read_only=self.read_only, principal=principal,
            csrf=self.csrf.token(principal), logout=isinstance(self.auth, TokenAuth),
            WorkerState=WorkerState, **context)
        return HTMLResponse(html, status_code=status_code)
