"""Operator commands of the ``aioqueue`` CLI: info, jobs, job, purge, pause,
resume, cancel and enqueue. Tables for people, ``--json`` for scripts.

Every command reads through :class:`~aioqueue.broker_admin.BrokerAdmin`
(bounded reads, no scans) or the public job API.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pydantic

from .app import App
from .broker_admin import PAGE_LIMIT, BrokerAdmin, JobState, QueueSummary
from .broker_workers import WorkerRegistry, WorkerState
from .cli_common import CommandError, add_app_arguments, open_app
from .cli_format import age, cell, out, out_json, table, when
from .cli_workers import cmd_workers, run_dashboard
from .errors import JobNotFound

Handler = Callable[[App, BrokerAdmin, argparse.Namespace], Awaitable[int]]


def app_queues(app: App) -> set[str]:
    """The queues an app's code names: its default queue, its tasks' and its
    schedules'."""
    names = {app.default_queue}
    names.update(t.queue for t in app.tasks.values())
    names.update(s.queue for s in app.schedules.values())
    return names


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        app = open_app(args)

        async def main() -> int:
            async with app:
                admin = BrokerAdmin(app.broker.lane, app.prefix, app.broker.shards)
                return await handler(app, admin, args)

        return anyio.run(main)

    return command


# -- info ------------------------------------------------------------------------


async def cmd_info(app: App, admin: BrokerAdmin, args: argparse.Namespace) -> int:
    shown = 0
    while True:
        await _info_once(app, admin, args)
        shown += 1
        if args.watch is None or (args.count is not None and shown >= args.count):
            return 0
        await anyio.sleep(args.watch)


async def _info_once(app: App, admin: BrokerAdmin, args: argparse.Namespace) -> None:
    queues = args.queues.split(",") if args.queues else sorted(
        set(await admin.known_queues()) | app_queues(app))
    summaries = await admin.summaries([q.strip() for q in queues if q.strip()])
    workers, _ = await WorkerRegistry(admin.lane, admin.prefix).workers(limit=1000)
    alive: dict[str, int] = {}
    for w in workers:
        for q in w.queues if w.state is WorkerState.ALIVE else ():
            alive[q] = alive.get(q, 0) + 1
    if args.json:
        rows = [{**dataclasses.asdict(s), "waiting": s.waiting, "workers": alive.get(s.name, 0)}
                for s in summaries]
        if args.watch is None:
            out_json(rows)
        else:  # one JSON document per line and refresh
            out(json.dumps(rows, sort_keys=True, default=str))
        return
    if args.watch is not None:
        out(f"-- {when(int(time.time() * 1000))} UTC")
    out(table(
        ["QUEUE", "WAITING", "BY PRIORITY", "SCHEDULED", "RUNNING", "DEAD", "PAUSED",
         "OLDEST", "WORKERS", "SUCCEEDED", "FAILED", "RETRIED"],
        [_info_row(s, alive.get(s.name, 0)) for s in summaries]))


def _info_row(s: QueueSummary, workers: int) -> list[Any]:
    prios = " ".join([*(f"p{p}={n}" for p, n in sorted(s.waiting_by_priority.items(),
                                                       reverse=True)),
                      *([f"held={s.held}"] if s.held else [])]) or "-"
    return [s.name, s.waiting, prios, s.scheduled, s.running, s.dead,
            "yes" if s.paused else "no", age(s.oldest_waiting_age_s), workers,
            s.counters.get("succeeded", 0), s.counters.get("failed", 0),
            s.counters.get("retried", 0)]


# -- jobs / job --------------------------------------------------------------------


async def cmd_jobs(app: App, admin: BrokerAdmin, args: argparse.Namespace) -> int:
    page = await admin.jobs(args.queue, args.state, limit=args.limit, cursor=args.cursor)
    if args.json:
        out_json(page)
        return 0
    score_title = {"scheduled": "DUE", "running": "LEASE UNTIL", "dead": "DEAD SINCE"}
    headers = ["ID", "TASK", "STATUS", "PRIORITY", "ATTEMPT", "ENQUEUED"]
    if args.state != "waiting":
        headers.append(score_title[args.state])
    rows = []
    for job in page.jobs:
        row: list[Any] = [job.id, job.task, job.status, job.priority, job.attempt,
                          when(job.enqueued_ms)]
        if args.state != "waiting":
            row.append(when(job.score_ms))
        rows.append(row)
    out(table(headers, rows))
    more = f"; next page: --cursor {page.next_cursor}" if page.next_cursor else ""
    out(f"{len(page.jobs)} of {page.total} {args.state} job(s) in {args.queue!r}{more}")
    if args.state == "waiting":
        (summary,) = await admin.summaries([args.queue])
        if summary.held:
            out(f"{summary.held} more waiting outside this list (held back by a rate limit "
                "or waiting in a concurrency group): see aioqueue limits")
    return 0


async def find_queue(app: App, admin: BrokerAdmin, job_id: str, queue: str | None) -> str:
    """The queue holding ``job_id``: the given one, else the one registered
    queue (or app queue) that has its record."""
    if queue:
        return queue
    candidates = sorted(set(await admin.known_queues()) | app_queues(app))
    found = await admin.find_queues(job_id, candidates)
    if not found:
        raise CommandError(f"no job {job_id!r} in any known queue "
                           f"({len(candidates)} searched); its record may have expired")
    if len(found) > 1:
        raise CommandError(f"job id {job_id!r} exists in several queues "
                           f"({', '.join(found)}): name one with --queue")
    return found[0]


async def cmd_job(app: App, admin: BrokerAdmin, args: argparse.Namespace) -> int:
    queue = await find_queue(app, admin, args.id, args.queue)
    try:
        info = await app.job(args.id, queue).info()
    except JobNotFound as exc:
        raise CommandError(str(exc)) from exc
    result = await admin.stored_result(queue, args.id)
    if args.json:
        out_json({**dataclasses.asdict(info), "result": result})
        return 0
    out(f"job {info.id} in queue {info.queue!r}")
    for label, value in [
        ("task", info.task), ("status", info.status.value), ("priority", info.priority),
        ("attempt", info.attempt), ("deliveries", info.deliveries), ("worker", info.worker),
        ("arguments", json.dumps(info.task_args)),
        ("result", None if result is None else json.dumps(result)),
        ("progress", None if info.progress is None else
         f"{info.progress.fraction:.0%} {info.progress.message}"),
    ]:
        out(f"  {label + ':':12} {cell(value)}")
    out("  timeline:")
    for label, ms in [("enqueued", info.enqueued_ms), ("started", info.started_ms),
                      ("finished", info.finished_ms)]:
        if ms is not None:
            out(f"    {when(ms)}  {label}")
    for err in info.errors or ([info.error] if info.error else []):
        out(f"  error (attempt {err.get('attempt', '?')}): {err.get('type')}: "
             f"{cell(err.get('message'))}")
        if err.get("traceback"):
            out("    " + str(err["traceback"]).rstrip().replace("\n", "\n    "))
    return 0


# -- actions -------------------------------------------------------------------------


async def cmd_purge(app: App, admin: BrokerAdmin, args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("purge asks for confirmation: pass --yes when not on a terminal")
        (summary,) = await admin.summaries([args.queue])
        count = summary.waiting if args.state == "waiting" else summary.scheduled
        answer = await anyio.to_thread.run_sync(
            input, f"cancel {count} {args.state} job(s) of queue {args.queue!r}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out("nothing purged")
            return 1
    purged = await admin.purge(args.queue, args.state,
                               result_ttl_ms=int(app.result_ttl_s * 1000))
    if args.json:
        out_json({"queue": args.queue, "state": args.state, "purged": purged})
    else:
        out(f"purged {purged} {args.state} job(s) from {args.queue!r}")
    return 0


async def cmd_pause(app: App, admin: BrokerAdmin, args: argparse.Namespace) -> int:
    if args.command == "pause":
        await admin.pause(args.queue)
    else:
        await admin.resume(args.queue)
    paused = await admin.is_paused(args.queue)
    if args.json:
        out_json({"queue": args.queue, "paused": paused})
    else:
        out(f"queue {args.queue!r} is {'paused' if paused else 'running'}")
    return 0


async def cmd_cancel(app: App, admin: BrokerAdmin, args: argparse.Namespace) -> int:
    queue = await find_queue(app, admin, args.id, args.queue)
    outcome = await app.job(args.id, queue).cancel(args.reason)
    if args.json:
        out_json({"id": args.id, "queue": queue, "outcome": outcome.value})
    else:
        out(f"job {args.id}: {outcome.value}")
    return 0


def _json_arg(text: str, what: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise CommandError(f"{what} must be a JSON {'array' if kind is list else 'object'}")
    return value


async def cmd_enqueue(app: App, admin: BrokerAdmin, args: argparse.Namespace) -> int:
    task_args = _json_arg(args.args, "--args", list)
    task_kwargs = _json_arg(args.kwargs, "--kwargs", dict)
    if args.task not in app.tasks and not args.unregistered:
        raise CommandError(f"no task named {args.task!r} in this app (registered: "
                           f"{', '.join(sorted(app.tasks)) or 'none'}); "
                           "--unregistered stores it unchecked")
    try:
        job = await app.enqueue_with(
            args.task, tuple(task_args), task_kwargs, queue=args.queue, delay=args.delay,
            priority=args.priority, job_id=args.job_id)
    except (pydantic.ValidationError, TypeError) as exc:
        raise CommandError(f"arguments of {args.task!r} refused, nothing enqueued: {exc}"
                           ) from exc
    if args.json:
        out_json({"id": job.id, "queue": job.queue})
    else:
        out(f"enqueued {job.id} in queue {job.queue!r}")
    return 0


# -- the parser ------------------------------------------------------------------------


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be 0.05..3600 seconds")
    return value


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= PAGE_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 1..{PAGE_LIMIT}")
    return value


def _command(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    add_app_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_run(handler))
    return p


def register(sub: Any) -> None:
    """Add the operator commands to the ``aioqueue`` sub-command parser."""
    p = _command(sub, "info", cmd_info,
                 "every known queue: waiting (by priority), scheduled, running, dead, "
                 "paused, oldest waiting job's age and counters")
    p.add_argument("--queues", default=None,
                   help="comma-separated queues to show (default: every known queue)")
    p.add_argument("--watch", type=_seconds, default=None, metavar="SECONDS",
                   help="show it again every SECONDS until Ctrl-C (with --json: one "
                   "JSON document per line)")
    p.add_argument("--count", type=int, default=None,
                   help="with --watch: stop after this many refreshes")

    p = _command(sub, "workers", cmd_workers,
                 "worker processes from their heartbeats: alive or lost, what they run")
    p.add_argument("--limit", type=_limit, default=100,
                   help=f"most workers shown, most recently seen first (1..{PAGE_LIMIT})")

    p = sub.add_parser("dashboard", help="serve the web dashboard (aioqueue[dashboard])",
                       description="serve the web dashboard; the token comes from the "
                       "AIOQUEUE_DASHBOARD_TOKEN environment variable")
    add_app_arguments(p)
    p.add_argument("--bind", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    p.add_argument("--read-only", action="store_true", help="show no actions, refuse every POST")
    p.add_argument("--no-auth", action="store_true",
                   help="no authentication (loopback addresses only)")
    p.set_defaults(func=run_dashboard)

    p = _command(sub, "jobs", cmd_jobs, "list a queue's jobs in one state, a page at a time")
    p.add_argument("queue", help="the queue")
    p.add_argument("--state", choices=[s.value for s in JobState], default="waiting",
                   help="which jobs (default waiting)")
    p.add_argument("--limit", type=_limit, default=50,
                   help=f"jobs per page, 1..{PAGE_LIMIT} (default 50)")
    p.add_argument("--cursor", default=None, help="the cursor a previous page printed")

    p = _command(sub, "job", cmd_job, "show one job: arguments, result, errors with "
                 "tracebacks, progress and timeline")
    p.add_argument("id", help="the job id")
    p.add_argument("--queue", default=None, help="its queue (default: found by id)")

    p = _command(sub, "purge", cmd_purge, "cancel every waiting (or scheduled) job of a queue")
    p.add_argument("queue", help="the queue")
    p.add_argument("--state", choices=["waiting", "scheduled"], default="waiting",
                   help="which jobs (default waiting)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    for name, text in [("pause", "stop starting jobs of a queue (running jobs finish; "
                                 "outlives worker restarts)"),
                       ("resume", "start jobs of a paused queue again")]:
        p = _command(sub, name, cmd_pause, text)
        p.add_argument("queue", help="the queue")

    p = _command(sub, "cancel", cmd_cancel, "cancel a job (waiting: at once; running: "
                 "through its worker)")
    p.add_argument("id", help="the job id")
    p.add_argument("--queue", default=None, help="its queue (default: found by id)")
    p.add_argument("--reason", default="cancelled by an operator",
                   help="stored as the job's error message")

    p = _command(sub, "enqueue", cmd_enqueue, "enqueue a job of a registered task, its "
                 "arguments validated as in Python")
    p.add_argument("task", help="the task's name")
    p.add_argument("--args", default="[]", help="positional arguments as a JSON array")
    p.add_argument("--kwargs", default="{}", help="keyword arguments as a JSON object")
    p.add_argument("--queue", default=None, help="override the task's queue")
    p.add_argument("--delay", type=float, default=None, help="seconds before it may run")
    p.add_argument("--priority", type=int, default=None,
                   help="higher runs first (default: the task's)")
    p.add_argument("--job-id", default=None, help="its id (default: a new one)")
    p.add_argument("--unregistered", action="store_true",
                   help="allow a task this app does not register (stored unchecked)")
