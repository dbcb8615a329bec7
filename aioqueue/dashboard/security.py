"""Who may look and who may act: authentication (a token, or the host
application's own check), CSRF protection for every action, and the
security headers of every response."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Authenticator = Callable[[Request], Awaitable[str | None]]
"""Returns who the request comes from (any non-empty text), or None."""

SESSION_COOKIE = "aioqueue_dashboard"
MAX_FORM_BYTES = 16 * 1024

HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
     b"frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null"
    # on form posts, and the Origin check could no longer tell our own forms apart
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
]


class Forbidden(Exception):
    """An action refused: bad or missing CSRF token, cross-site request,
    read-only mode."""


class TokenAuth:
    """A shared secret: sent as ``Authorization: Bearer <token>``, or typed
    once into the login form, which sets an HttpOnly, SameSite=Strict cookie
    holding a keyed hash of it (never the token itself)."""

    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise ValueError("a dashboard token must be at least 16 characters")
        self._token = token
        self.session_value = hmac.new(token.encode(), b"aioqueue-session",
                                      hashlib.sha256).hexdigest()

    def matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token.encode())

    async def __call__(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer ") and self.matches(header[7:]):
            return "token"
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if cookie and hmac.compare_digest(cookie, self.session_value):
            return "token"
        return None


class Csrf:
    """Synchronizer tokens bound to the principal, plus Fetch Metadata and
    Origin checks: a cross-site form or script cannot act."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def token(self, principal: str) -> str:
        return hmac.new(self._secret, b"csrf:" + principal.encode(),
                        hashlib.sha256).hexdigest()

    def check(self, request: Request, principal: str, form: dict[str, str]) -> None:
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise Forbidden(f"cross-site request refused (Sec-Fetch-Site: {site})")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise Forbidden("request from another origin refused")
        if not hmac.compare_digest(form.get("csrf", ""), self.token(principal)):
            raise Forbidden("missing or wrong CSRF token")


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form (first value of each field), at most 16 KiB."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Forbidden("form too large")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


class SecurityHeaders:
    """Adds the security headers to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
