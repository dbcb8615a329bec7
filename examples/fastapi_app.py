"""FastAPI: enqueue and return the id, job status, wait with a deadline, progress as SSE.

Run it as written: ``python examples/fastapi_app.py`` starts a worker in this
process and calls each endpoint once (against the server at AIOQUEUE_URL, or
an embedded one). To serve it (needs ``pip install uvicorn``):

    aioqueue dev examples.fastapi_app:app                     # terminal 1: server + worker
    AIOQUEUE_URL=redis://127.0.0.1:6390/0 uvicorn examples.fastapi_app:api   # terminal 2
    curl -X POST localhost:8000/reports -H 'content-type: application/json' -d '{"pages": 5}'
    curl -N localhost:8000/reports/<id>/events
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import httpx
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

import aioqueue
from aioqueue.integrations.asgi import lifespan_events
from aioqueue.integrations.starlette import aioqueue_app, lifespan
from aioqueue.integrations.web import SSE_HEADERS, find_job, job_state, sse_events, wait_state
from aioqueue.testing import local_server

app = aioqueue.App(queue="fastapi-example")  # the URL comes from AIOQUEUE_URL


@app.task
async def build_report(ctx: aioqueue.JobContext, pages: int) -> dict[str, int]:
    for page in range(1, pages + 1):
        await anyio.sleep(0.02)  # the real work
        await ctx.progress(page / pages, f"page {page} of {pages}")
    return {"pages": pages}


api = FastAPI(lifespan=lifespan(app))
Queue = Annotated[aioqueue.App, Depends(aioqueue_app)]


class ReportRequest(BaseModel):
    pages: int = Field(ge=1, le=1000)


def _job(queue: aioqueue.App, job_id: str) -> aioqueue.Job[Any]:
    job = find_job(queue, job_id)
    if job is None:
        raise HTTPException(404, "no such job")
    return job


@api.post("/reports", status_code=202)
async def start_report(body: ReportRequest, queue: Queue) -> dict[str, str]:
    """Enqueue and answer at once with the job's id."""
    job = await build_report.enqueue(body.pages)
    return {"id": job.id}


@api.get("/reports/{job_id}")
async def report_status(job_id: str, queue: Queue) -> dict[str, Any]:
    state = await job_state(_job(queue, job_id))
    if state["status"] == "unknown":
        raise HTTPException(404, "no such job")
    return state


@api.get("/reports/{job_id}/wait")
async def wait_for_report(
    job_id: str, queue: Queue, timeout: Annotated[float, Query(gt=0, le=30)] = 10.0,
) -> dict[str, Any]:
    """Wait up to ``timeout`` seconds; the status says whether it ended in time."""
    return await wait_state(_job(queue, job_id), timeout)


@api.get("/reports/{job_id}/events")
async def report_events(job_id: str, queue: Queue) -> StreamingResponse:
    """The job's progress as server-sent events until it ends."""
    return StreamingResponse(sse_events(_job(queue, job_id)), media_type="text/event-stream",
                             headers=SSE_HEADERS)


async def demo() -> None:
    """Call each endpoint once, with a worker running in this process."""
    worker = aioqueue.Supervisor(app, concurrency=10)
    async with lifespan_events(api), anyio.create_task_group() as tg:
        await tg.start(worker.run)
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            started = await client.post("/reports", json={"pages": 3})
            job_id = started.json()["id"]
            print(f"POST /reports -> {started.status_code} {started.json()}")
            events = await client.get(f"/reports/{job_id}/events")
            for line in events.text.splitlines():
                if line.startswith("data:"):
                    print(f"event {line}")
            waited = await client.get(f"/reports/{job_id}/wait", params={"timeout": 5})
            print(f"GET /reports/{job_id}/wait -> {waited.json()}")
            missing = await client.get("/reports/no-such-job")
            print(f"GET /reports/no-such-job -> {missing.status_code}")
        worker.request_shutdown()


if __name__ == "__main__":
    with local_server() as url:
        app.url = url
        anyio.run(demo)
