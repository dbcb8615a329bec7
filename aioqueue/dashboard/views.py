"""The dashboard's pages: each reads one bounded page of data and names
its template."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ..broker_admin import PAGE_LIMIT, JobState
from ..broker_stats import MinuteStats, recent_minutes
from ..broker_workers import WorkerState
from ..errors import JobNotFound

if TYPE_CHECKING:
    from .state import Dashboard

Page = Callable[["Dashboard", Request], Awaitable[tuple[str, dict[str, Any]]]]
Action = Callable[["Dashboard", dict[str, str]], Awaitable[str]]

QUEUES_SHOWN = 200
PAGE_SIZE = 50
KEYS_SHOWN = 20


async def known_queues(dash: Dashboard) -> list[str]:
    names = set(await dash.admin.known_queues())
    names.add(dash.app.default_queue)
    names.update(t.queue for t in dash.app.tasks.values())
    return sorted(names)[:QUEUES_SHOWN]


CHART_QUEUES = 10


def chart(rows: list[list[MinuteStats]]) -> dict[str, Any]:
    """Bars of the last hour, summed over queues: succeeded and failed per
    minute, scaled to the busiest minute (an SVG: no inline style, no JS)."""
    minutes = [
        (sum(r[i].counts.get("succeeded", 0) for r in rows),
         sum(r[i].counts.get("failed", 0) for r in rows))
        for i in range(len(rows[0]))] if rows else []
    peak = max((ok + bad for ok, bad in minutes), default=0)
    scale = 100 / (peak or 1)
    bars = [{"x": i * 10, "ok": ok * scale, "bad": bad * scale, "ok_n": ok,
             "bad_n": bad} for i, (ok, bad) in enumerate(minutes)]
    return {"bars": bars, "peak": peak,
            "total": sum(ok + bad for ok, bad in minutes)}


def latency(rows: list[MinuteStats]) -> dict[str, float | None]:
    run_n = sum(r.run_n for r in rows)
    wait_n = sum(r.wait_n for r in rows)
    return {
        "run_mean": sum((r.run_mean_s or 0) * r.run_n for r in rows) / run_n if run_n else None,
        "run_max": max((r.run_max_s or 0 for r in rows if r.run_n), default=None),
        "wait_mean": (sum((r.wait_mean_s or 0) * r.wait_n for r in rows) / wait_n
                      if wait_n else None),
        "wait_max": max((r.wait_max_s or 0 for r in rows if r.wait_n), default=None),
    }


async def overview(dash: Dashboard, request: Request) -> tuple[str, dict[str, Any]]:
    names = await known_queues(dash)
    queues = await dash.admin.summaries(names)
    workers, total = await dash.workers.workers(limit=PAGE_LIMIT)
    hour = await recent_minutes(dash.app.broker.lane, dash.app.prefix, names[:CHART_QUEUES],
                                shards=dash.app.broker.shards)
    return "overview.html", {"queues": queues, "workers": workers, "workers_total": total,
                             "chart": chart(list(hour.values())),
                             "chart_queues": min(len(names), CHART_QUEUES)}


async def queue_page(dash: Dashboard, request: Request) -> tuple[str, dict[str, Any]]:
    name = request.path_params["queue"]
    state = JobState(request.query_params.get("state", "waiting"))
    cursor = request.query_params.get("cursor") or None
    (summary,) = await dash.admin.summaries([name])
    page = await dash.admin.jobs(name, state, limit=PAGE_SIZE, cursor=cursor)
    hour = (await recent_minutes(dash.app.broker.lane, dash.app.prefix, [name],
                                  shards=dash.app.broker.shards))[name]
    limits = dash.limits
    flow = {"rates": await limits.limits(name),
            "concurrency": await limits.concurrency_limits(name),
            "per_key": await limits.groups(name, limit=KEYS_SHOWN)}
    return "queue.html", {"queue": summary, "page": page, "states": list(JobState),
                          "state": state, "chart": chart([hour]), "latency": latency(hour),
                          "flow": flow}


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


async def metrics_text(dash: Dashboard) -> bytes:
    """Queue-level Prometheus metrics from one bounded read of Redis."""
    from ..metrics import queue_families, render  # the [metrics] extra

    names = await known_queues(dash)
    summaries = await dash.admin.summaries(names)
    workers, _ = await dash.workers.workers(limit=PAGE_LIMIT)
    alive: dict[str, int] = {}
    for w in workers:
        for q in w.queues if w.state is WorkerState.ALIVE else ():
            alive[q] = alive.get(q, 0) + 1
    minutes = await recent_minutes(dash.app.broker.lane, dash.app.prefix, names, minutes=2,
                                   shards=dash.app.broker.shards)
    return render(queue_families(summaries, alive, minutes))


PAGES: dict[str, tuple[str, Page]] = {
    "overview": ("/", overview),
    "queue": ("/queues/{queue}", queue_page),
    "job": ("/job", job_page),
    "workers": ("/workers", workers_page),
    "schedules": ("/schedules", schedules_page),
    "dead": ("/dead", dead_page),
}
