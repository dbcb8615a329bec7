"""Web-framework integration: the example FastAPI, aiohttp and Django apps,
driven through their real ASGI/aiohttp stacks against a real server and worker."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

import aioqueue
from aioqueue.integrations.asgi import lifespan_events, with_lifespan
from aioqueue.integrations.starlette import aioqueue_app
from aioqueue.testing import run_worker
from examples import aiohttp_app, django_app, fastapi_app


class Client(Protocol):
    async def __call__(self, method: str, path: str, *, body: Any = None,
                       params: dict[str, str] | None = None) -> tuple[int, str]: ...


@contextlib.asynccontextmanager
async def asgi_client(asgi_app: Any) -> AsyncIterator[Client]:
    async with lifespan_events(asgi_app):
        transport = httpx.ASGITransport(app=asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            async def call(method: str, path: str, *, body: Any = None,
                           params: dict[str, str] | None = None) -> tuple[int, str]:
                reply = await http.request(method, path, json=body, params=params)
                return reply.status_code, reply.text

            yield call


@contextlib.asynccontextmanager
async def aiohttp_client(_: Any) -> AsyncIterator[Client]:
    async with TestClient(TestServer(aiohttp_app.make_web_app())) as http:
        async def call(method: str, path: str, *, body: Any = None,
                       params: dict[str, str] | None = None) -> tuple[int, str]:
            reply = await http.request(method, path, json=body, params=params)
            return reply.status, await reply.text()

        yield call


FRAMEWORKS: dict[str, tuple[aioqueue.App, Callable[[Any], Any], Any]] = {
    "fastapi": (fastapi_app.app, asgi_client, fastapi_app.api),
    "aiohttp": (aiohttp_app.app, aiohttp_client, None),
    "django": (django_app.app, asgi_client, django_app.application),
}


@pytest.fixture(params=sorted(FRAMEWORKS))
def framework(request: pytest.FixtureRequest, redis_url: str) -> tuple[aioqueue.App, Any]:
    app, make_client, target = FRAMEWORKS[request.param]
    app.url = redis_url
    return app, lambda: make_client(target)


async def test_enqueue_returns_an_id_and_status_follows_the_job(
    framework: tuple[aioqueue.App, Callable[[], Any]],
) -> None:
    app, client = framework
    async with client() as call:
        # enqueue and return at once, with no worker yet: the job is queued
        status, text = await call("POST", "/reports", body={"pages": 2})
        assert status == 202
        job_id = json.loads(text)["id"]
        status, text = await call("GET", f"/reports/{job_id}")
        assert (status, json.loads(text)["status"]) == (200, "queued")
        # waiting with a deadline answers when the deadline passes
        status, text = await call("GET", f"/reports/{job_id}/wait", params={"timeout": "0.2"})
        assert (status, json.loads(text)["status"]) == (200, "queued")
        async with run_worker(app):
            status, text = await call("GET", f"/reports/{job_id}/wait", params={"timeout": "20"})
        state = json.loads(text)
        assert (status, state["status"], state["result"]) == (200, "succeeded", {"pages": 2})
        assert state["progress"] == {"fraction": 1.0, "message": "page 2 of 2"}


async def test_progress_streams_as_server_sent_events(
    framework: tuple[aioqueue.App, Callable[[], Any]],
) -> None:
    app, client = framework
    async with client() as call, run_worker(app):
        _, text = await call("POST", "/reports", body={"pages": 3})
        job_id = json.loads(text)["id"]
        status, stream = await call("GET", f"/reports/{job_id}/events")
    assert status == 200
    events = [json.loads(line.removeprefix("data: "))
              for line in stream.splitlines() if line.startswith("data: ")]
    assert events[-1]["status"] == "succeeded"
    fractions = [e["progress"]["fraction"] for e in events if e["progress"]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


async def test_unknown_bad_and_invalid_requests_are_refused(
    framework: tuple[aioqueue.App, Callable[[], Any]],
) -> None:
    _, client = framework
    async with client() as call:
        assert (await call("GET", "/reports/no-such-job"))[0] == 404
        status, text = await call("GET", "/reports/no-such-job/wait", params={"timeout": "1"})
        assert (status, json.loads(text)["status"]) == (200, "unknown")
        assert (await call("GET", "/reports/bad%20id%7B%7D"))[0] == 404
        assert (await call("POST", "/reports", body={"pages": 0}))[0] == 422
        _, text = await call("POST", "/reports", body={"pages": 1})
        job_id = json.loads(text)["id"]
        assert (await call("GET", f"/reports/{job_id}/wait", params={"timeout": "99"}))[0] \
            in (400, 422)


async def test_asgi_start_up_fails_with_a_clear_message_when_redis_is_unreachable() -> None:
    app = aioqueue.App("redis://127.0.0.1:1/0")

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("no request expected")

    with pytest.raises(RuntimeError, match="aioqueue: RedisUnavailable"):
        async with lifespan_events(with_lifespan(nothing, app)):
            pass


def test_dependency_without_the_lifespan_says_how_to_fix_it() -> None:
    class Connection:
        class app:
            class state:
                pass

    with pytest.raises(aioqueue.ConfigurationError, match="lifespan"):
        aioqueue_app(Connection())  # type: ignore[arg-type]

