"""Django (async views): enqueue and return the id, job status, wait with a deadline, SSE.

A one-file Django project. Run it as written: ``python examples/django_app.py``
starts a worker in this process and calls each view once through the ASGI
application, lifespan included (against the server at AIOQUEUE_URL, or an
embedded one). To serve it (needs ``pip install uvicorn``):

    aioqueue dev examples.django_app:app                                    # terminal 1
    AIOQUEUE_URL=redis://127.0.0.1:6390/0 uvicorn examples.django_app:application

In a real project the settings live in settings.py, the views in views.py,
and ``application = with_lifespan(get_asgi_application(), app)`` in asgi.py.
"""

from __future__ import annotations

import json

import anyio
import django
import httpx
from django.conf import settings

import aioqueue
from aioqueue.integrations.asgi import ASGIApp, lifespan_events, with_lifespan
from aioqueue.integrations.web import SSE_HEADERS, find_job, job_state, sse_events, wait_state
from aioqueue.testing import local_server

if not settings.configured:
    settings.configure(DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
                       SECRET_KEY="example-only-not-secret", MIDDLEWARE=[])
    django.setup()

from django.core.asgi import get_asgi_application
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

app = aioqueue.App(queue="django-example")  # the URL comes from AIOQUEUE_URL


@app.task
async def build_report(ctx: aioqueue.JobContext, pages: int) -> dict[str, int]:
    for page in range(1, pages + 1):
        await anyio.sleep(0.02)  # the real work
        await ctx.progress(page / pages, f"page {page} of {pages}")
    return {"pages": pages}


def _not_found() -> JsonResponse:
    return JsonResponse({"detail": "no such job"}, status=404)


@csrf_exempt  # an API called with a token, not a browser form
@require_POST
async def start_report(request: HttpRequest) -> HttpResponse:
    """Enqueue and answer at once with the job's id."""
    try:
        pages = json.loads(request.body).get("pages")
    except (ValueError, AttributeError):
        return JsonResponse({"detail": "expected a JSON object"}, status=400)
    if not isinstance(pages, int) or not 1 <= pages <= 1000:
        return JsonResponse({"detail": "pages must be an integer in [1, 1000]"}, status=422)
    job = await build_report.enqueue(pages)
    return JsonResponse({"id": job.id}, status=202)


@require_GET
async def report_status(request: HttpRequest, job_id: str) -> HttpResponse:
    job = find_job(app, job_id)
    state = await job_state(job) if job is not None else {"status": "unknown"}
    return _not_found() if state["status"] == "unknown" else JsonResponse(state)


@require_GET
async def wait_for_report(request: HttpRequest, job_id: str) -> HttpResponse:
    """Wait up to ``?timeout=`` seconds (at most 30); the status says whether
    it ended in time."""
    job = find_job(app, job_id)
    if job is None:
        return _not_found()
    try:
        timeout = float(request.GET.get("timeout", "10"))
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= 30:
        return JsonResponse({"detail": "timeout must be a number in (0, 30]"}, status=400)
    return JsonResponse(await wait_state(job, timeout))


@require_GET
async def report_events(request: HttpRequest, job_id: str) -> HttpResponseBase:
    """The job's progress as server-sent events until it ends."""
    job = find_job(app, job_id)
    if job is None:
        return _not_found()
    return StreamingHttpResponse(sse_events(job), content_type="text/event-stream",
                                 headers=SSE_HEADERS)


urlpatterns = [
    path("reports", start_report),
    path("reports/<str:job_id>", report_status),
    path("reports/<str:job_id>/wait", wait_for_report),
    path("reports/<str:job_id>/events", report_events),
]

application: ASGIApp = with_lifespan(get_asgi_application(), app)


async def demo() -> None:
    """Call each view once, with a worker running in this process."""
    worker = aioqueue.Supervisor(app, concurrency=10)
    async with lifespan_events(application), anyio.create_task_group() as tg:
        await tg.start(worker.run)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://django") as client:
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
