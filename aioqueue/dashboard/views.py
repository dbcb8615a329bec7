"""The dashboard's pages: each reads one bounded page of data and names
its template."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ..broker_admin import PAGE_LIMIT, JobState
from ..errors import JobNotFound

if TYPE_CHECKING:
    from .app import Dashboard

Page = Callable[["Dashboard", Request], Awaitable[tuple[str, dict[str, Any]]]]
Action = Callable[["Dashboard", dict[str, str]], Awaitable[str]]

QUEUES_SHOWN = 200
PAGE_SIZE = 50


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def known_queues(dash: Dashboard) -> list[str]:
    names = set(await dash.admin.known_queues())
    names.add(dash.app.default_queue)
    names.update(t.queue for t in dash.app.tasks.values())
    return sorted(names)[:QUEUES_SHOWN]


async def overview(dash: Dashboard, request: Request) -> tuple[str, dict[str, Any]]:
    queues = await dash.admin.summaries(await known_queues(dash))
    workers, total = await dash.workers.workers(limit=PAGE_LIMIT)
    return "overview.html", {"queues": queues, "workers": workers, "workers_total": total}


async def queue_page(dash: Dashboard, request: Request) -> tuple[str, dict[str, Any]]:
    name = request.path_params["queue"]
    state = JobState(request.query_params.get("state", "waiting"))
    cursor = request.query_params.get("cursor") or None
    (summary,) = await dash.admin.summaries([name])
    page = await dash.admin.jobs(name, state, limit=PAGE_SIZE, cursor=cursor)
    return "queue.html", {"queue": summary, "page": page, "states": list(JobState),
                          "state": state}


async def job_page(dash: Dashboard, request: Request) -> tuple[str, dict[str, Any]]:
    job_id = request.query_params.get("id", "").strip()
    if not job_id:
        raise ValueError("give a job id")
    queue = request.query_params.get("queue") or None
    if queue is None:
        found = await dash.admin.find_queues(job_id, await known_queues(dash))
        if not found:
            raise ValueError(f"no job {job_id!r} in any known queue (it may have expired)")
        queue = found[0]
    try:
        info = await dash.app.job(job_id, queue).info()
    except JobNotFound as exc:
        raise ValueError(str(exc)) from exc
    result = await dash.admin.stored_result(queue, job_id)
    return "job.html", {"job": info, "result": result}


async def workers_page(dash: Dashboard, request: Request) -> tuple[str, dict[str, Any]]:
    offset = max(0, int(request.query_params.get("offset", "0")))
    workers, total = await dash.workers.workers(limit=PAGE_SIZE, offset=offset)
    return "workers.html", {"workers": workers, "total": total, "offset": offset,
                            "page_size": PAGE_SIZE}


async def schedules_page(dash: Dashboard, request: Request) -> tuple[str, dict[str, Any]]:
    broker = dash.app.broker
    now_ms = await broker.server_time_ms()
    last: dict[str, dict[str, int]] = {}
    rows = []
    for sched in list(dash.app.schedules.values())[:PAGE_LIMIT]:
        if sched.queue not in last:
            last[sched.queue] = await broker.last_ticks(sched.queue)
        rows.append({"name": sched.name, "task": sched.task.name, "queue": sched.queue,
                     "when": sched.describe(), "last": last[sched.queue].get(sched.name),
                     "next": sched.next_after(now_ms)})
    return "schedules.html", {"schedules": rows}


async def dead_page(dash: Dashboard, request: Request) -> tuple[str, dict[str, Any]]:
    summaries = [s for s in await dash.admin.summaries(await known_queues(dash)) if s.dead]
    pages = [await dash.admin.jobs(s.name, JobState.DEAD, limit=10) for s in summaries[:20]]
    return "dead.html", {"pages": pages}


PAGES: dict[str, tuple[str, Page]] = {
    "overview": ("/", overview),
    "queue": ("/queues/{queue}", queue_page),
    "job": ("/job", job_page),
    "workers": ("/workers", workers_page),
    "schedules": ("/schedules", schedules_page),
    "dead": ("/dead", dead_page),
}
