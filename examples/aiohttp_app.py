"""aiohttp: enqueue and return the id, job status, wait with a deadline, progress as SSE.

Run it as written: ``python examples/aiohttp_app.py`` starts a worker in this
process and calls each endpoint once through aiohttp's test client (against
the server at AIOQUEUE_URL, or an embedded one). To serve it:

    aioqueue dev examples.aiohttp_app:app                                # terminal 1
    AIOQUEUE_URL=redis://127.0.0.1:6390/0 python -m aiohttp.web examples.aiohttp_app:make_web_app
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import aioqueue
from aioqueue.integrations.aiohttp import cleanup_ctx, get_app
from aioqueue.integrations.web import SSE_HEADERS, find_job, job_state, sse_events, wait_state
from aioqueue.testing import local_server

app = aioqueue.App(queue="aiohttp-example")  # the URL comes from AIOQUEUE_URL


@app.task
async def build_report(ctx: aioqueue.JobContext, pages: int) -> dict[str, int]:
    for page in range(1, pages + 1):
        await anyio.sleep(0.02)  # the real work
        await ctx.progress(page / pages, f"page {page} of {pages}")
    return {"pages": pages}


def _job(request: web.Request) -> aioqueue.Job[Any]:
    job = find_job(get_app(request), request.match_info["job_id"])
    if job is None:
        raise web.HTTPNotFound(text="no such job")
    return job


async def start_report(request: web.Request) -> web.Response:
    """Enqueue and answer at once with the job's id."""
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="expected a JSON body") from None
    pages = body.get("pages") if isinstance(body, dict) else None
    if not isinstance(pages, int) or not 1 <= pages <= 1000:
        raise web.HTTPUnprocessableEntity(text="pages must be an integer in [1, 1000]")
    job = await build_report.enqueue(pages)
    return web.json_response({"id": job.id}, status=202)


async def report_status(request: web.Request) -> web.Response:
    state = await job_state(_job(request))
    if state["status"] == "unknown":
        raise web.HTTPNotFound(text="no such job")
    return web.json_response(state)


async def wait_for_report(request: web.Request) -> web.Response:
    """Wait up to ``?timeout=`` seconds (at most 30); the status says whether
    it ended in time."""
    try:
        timeout = float(request.query.get("timeout", "10"))
    except ValueError:
        raise web.HTTPBadRequest(text="timeout must be a number") from None
    if not 0 < timeout <= 30:
        raise web.HTTPBadRequest(text="timeout must be in (0, 30]")
    return web.json_response(await wait_state(_job(request), timeout))


async def report_events(request: web.Request) -> web.StreamResponse:
    """The job's progress as server-sent events until it ends."""
    job = _job(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **SSE_HEADERS})
    await response.prepare(request)
    async for message in sse_events(job):
        await response.write(message.encode())
    await response.write_eof()
    return response


def make_web_app(argv: list[str] | None = None) -> web.Application:
    web_app = web.Application()
    web_app.cleanup_ctx.append(cleanup_ctx(app))
    web_app.router.add_post("/reports", start_report)
    web_app.router.add_get("/reports/{job_id}", report_status)
    web_app.router.add_get("/reports/{job_id}/wait", wait_for_report)
    web_app.router.add_get("/reports/{job_id}/events", report_events)
    return web_app


async def demo() -> None:
    """Call each endpoint once, with a worker running in this process."""
    worker = aioqueue.Supervisor(app, concurrency=10)
    async with TestClient(TestServer(make_web_app())) as client:
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            started = await client.post("/reports", json={"pages": 3})
            job_id = (await started.json())["id"]
            print(f"POST /reports -> {started.status} {{'id': {job_id!r}}}")
            events = await client.get(f"/reports/{job_id}/events")
            for line in (await events.text()).splitlines():
                if line.startswith("data:"):
                    print(f"event {line}")
            waited = await client.get(f"/reports/{job_id}/wait", params={"timeout": "5"})
            print(f"GET /reports/{job_id}/wait -> {json.dumps(await waited.json())}")
            missing = await client.get("/reports/no-such-job")
            print(f"GET /reports/no-such-job -> {missing.status}")
            worker.request_shutdown()


if __name__ == "__main__":
    with local_server() as url:
        app.url = url
        anyio.run(demo)
