"""The ``aioqueue`` command."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from . import (
    __version__,
    cli_flow,
    cli_ops,
    cli_workers,
    dead_letters,
    logs,
    processes,
    processes_child,
)
from .app import App
from .cli_common import CommandError, add_app_arguments, load_app, open_app, split_queues
from .cli_format import out_json
from .errors import AioqueueError
from .record import JobInfo
from .supervisor import Supervisor, exit_without_waiting_for_threads

log = logging.getLogger("aioqueue.cli")

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def _run_worker(app: App, args: argparse.Namespace) -> int:
    queues = split_queues(args.queues) or app.task_queues()
    supervisor = Supervisor(
        app, queues=queues, concurrency=args.concurrency, burst=args.burst,
        handle_signals=True,
    )
    log.info("aioqueue worker: queues %s; tasks %s", ", ".join(queues), ", ".join(
        f"{t.name} ({t.queue})" for t in sorted(app.tasks.values(), key=lambda t: t.name))
        or "none")
    if not app.tasks:
        log.warning("aioqueue worker: the app registers no task: every job will be "
                    "dead-lettered as TaskNotFound")
    backend_options: dict[str, Any] = {}
    if args.uvloop:
        if importlib.util.find_spec("uvloop") is None:
            raise CommandError("--uvloop needs the uvloop package "
                               "(pip install 'aioqueue[uvloop]')")
        backend_options["use_uvloop"] = True
    stop_metrics = cli_workers.worker_metrics(
        supervisor, processes_child.metrics_port(getattr(args, "metrics_port", None)))
    try:
        anyio.run(processes_child.serve, supervisor, args, backend="asyncio",
                  backend_options=backend_options)
    finally:
        stop_metrics()
    exit_without_waiting_for_threads(supervisor, 0)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    if processes.wants_parent(args):
        return processes.run_parent(args, args.argv)
    return _run_worker(open_app(args), args)


def cmd_dead(args: argparse.Namespace) -> int:
    app = open_app(args)

    async def run() -> int:
        async with app:
            queue = args.queue or app.default_queue
            if args.action == "list":
                _print_dead(await app.dead_letters(queue, limit=args.limit), queue, args)
            elif args.action == "replay":
                return await _replay(app, queue, args)
            else:
                if not args.ids and not args.all:
                    raise CommandError("give job ids to purge, or --all")
                count = await app.purge_dead(args.ids or None, queue=queue)
                print(f"purged {count} job(s)")
        return 0

    return anyio.run(run)


def _print_dead(infos: Sequence[JobInfo], queue: str, args: argparse.Namespace) -> None:
    if args.json:
        out_json(list(infos))
        return
    for info in infos:
        err = info.error or {}
        print(f"{info.id}\t{info.task}\tattempts={info.attempt}\t"
              f"{err.get('type', '?')}: {err.get('message', '')}")
        if args.verbose:
            print(f"  args: {json.dumps(info.task_args)}")
            for e in info.errors:
                print(f"  attempt {e.get('attempt')}: {e.get('type')}: {e.get('message')}")
                if e.get("traceback"):
                    print("    " + str(e["traceback"]).rstrip().replace("\n", "\n    "))
    print(f"{len(infos)} dead-lettered job(s) shown in queue {queue!r}")


async def _replay(app: App, queue: str, args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        raise CommandError("give job ids to replay, or --all")
    if args.ids and args.all:
        raise CommandError("give job ids or --all, not both")
    requested = args.ids or None
    if args.new_ids:
        replayed = await dead_letters.replay_as_new(app.broker, queue, requested)
    else:
        ids = await app.replay_dead(requested, queue=queue)
        replayed = dict(zip(ids, ids, strict=True))
    for old, new in replayed.items():
        print(f"replayed {old}" + (f" as {new}" if new != old else ""))
    print(f"replayed {len(replayed)} job(s) in queue {queue!r}")
    missing = [i for i in args.ids if i not in replayed]
    if missing:
        raise CommandError(f"not dead-lettered in queue {queue!r} (nothing done): "
                           + " ".join(missing))
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    app = open_app(args)

    def fmt(ms: int | None) -> str:
        if ms is None:
            return "-"
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")

    async def run() -> int:
        async with app:
            now_ms = await app.broker.server_time_ms()
            last: dict[str, dict[str, int]] = {}
            rows: list[dict[str, Any]] = []
            for sched in app.schedules.values():
                if sched.queue not in last:
                    last[sched.queue] = await app.broker.last_ticks(sched.queue)
                rows.append({
                    "name": sched.name, "task": sched.task.name, "queue": sched.queue,
                    "cron": sched.cron, "tz": str(sched.tz),
                    "every_s": sched.every.total_seconds() if sched.every else None,
                    "missed": sched.missed, "last_ms": last[sched.queue].get(sched.name),
                    "next_ms": sched.next_after(now_ms)})
                if not args.json:
                    print(f"{sched.name}\ttask={sched.task.name}\t{sched.describe()}\t"
                          f"missed={sched.missed}\tlast={fmt(rows[-1]['last_ms'])}"
                          f"\tnext={fmt(rows[-1]['next_ms'])}")
            if args.json:
                out_json(rows)
            else:
                print(f"{len(app.schedules)} schedule(s)")
        return 0

    return anyio.run(run)


def cmd_dev(args: argparse.Namespace) -> int:
    from .server import ServerProcess

    directory = Path(args.dir).resolve()
    server = ServerProcess(port=args.port, directory=directory, appendonly=True)
    server.start()
    print(f"aioqueue dev: {server.binary.kind} {server.binary.version} with AOF in "
          f"{directory}", flush=True)
    print(f"aioqueue dev: listening on {server.url}", flush=True)
    print(f"aioqueue dev: export AIOQUEUE_URL={server.url}", flush=True)
    try:
        if args.app:
            os.environ["AIOQUEUE_URL"] = server.url
            app = load_app(args.app)
            app.url = server.url
            return _run_worker(app, args)
        print("aioqueue dev: no MODULE:ATTRIBUTE given; serving until Ctrl-C", flush=True)
        try:
            assert server.process is not None
            server.process.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        server.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aioqueue",
        description="Run workers and operate the queues of an aioqueue app. Every command "
        "takes the app as MODULE:ATTR (dev: if given); 'aioqueue COMMAND --help' tells more.")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS,
                        help="DEBUG, INFO (default), WARNING or ERROR; also after the command")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text lines, or one JSON object per line with job fields "
                        "(job_id, task, queue, attempt...)")
    parser.add_argument("--version", action="version", version=f"aioqueue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def worker_options(p: argparse.ArgumentParser, *, processes_too: bool) -> None:
        p.add_argument("--concurrency", type=int, default=100,
                       help="most jobs running at once (default 100)")
        p.add_argument("--queues", default=None,
                       help="comma-separated queues to consume (default: the queues of "
                       "the app's tasks and schedules)")
        p.add_argument("--burst", action="store_true",
                       help="exit once the queues are empty")
        p.add_argument("--uvloop", action="store_true", help="run on uvloop")
        p.add_argument("--metrics-port", type=int, default=None,
                       help="serve Prometheus metrics of this worker on this port "
                       "(aioqueue[metrics])"
                       + ("; with --processes N, child i serves PORT+i" if processes_too else ""))

    text = "run a worker (supervisor) process"
    worker = sub.add_parser("worker", help=text, description=text)
    add_app_arguments(worker)
    worker_options(worker, processes_too=True)
    processes.add_options(worker)
    worker.set_defaults(func=cmd_worker)

    text = "list, replay or purge dead-lettered jobs"
    dead = sub.add_parser("dead", help=text, description=text)
    dead.add_argument("action", choices=["list", "replay", "purge"],
                      help="list them, replay them (fresh attempts) or purge them")
    add_app_arguments(dead)
    dead.add_argument("ids", nargs="*", help="job ids (replay/purge)")
    dead.add_argument("--all", action="store_true", help="every dead-lettered job")
    dead.add_argument("--queue", default=None, help="the queue (default: the app's default queue)")
    dead.add_argument("--limit", type=processes.positive_int, default=100,
                      help="list: most jobs shown, oldest first (default 100)")
    dead.add_argument("--new-ids", action="store_true",
                      help="replay as new jobs with new ids (the dead ones are purged)")
    dead.add_argument("-v", "--verbose", action="store_true",
                      help="show arguments and every attempt's error and traceback")
    dead.add_argument("--json", action="store_true",
                      help="list: print JSON for scripts (every field of each job)")
    dead.set_defaults(func=cmd_dead)

    text = "list periodic schedules and next fire times"
    schedules = sub.add_parser("schedules", help=text, description=text)
    add_app_arguments(schedules)
    schedules.add_argument("--json", action="store_true", help="print JSON for scripts")
    schedules.set_defaults(func=cmd_schedules)

    text = "start a local server (AOF on) and, given an app, a worker against it"
    dev = sub.add_parser("dev", help=text, description=text)
    dev.add_argument("app", metavar="MODULE:ATTR", nargs="?", default=None,
                     help="where the App lives (none: only the server)")
    dev.add_argument("--port", type=int, default=6390,
                     help="the server's port on 127.0.0.1 (default 6390; refused if in use)")
    dev.add_argument("--dir", default=".aioqueue/redis",
                     help="data directory (default .aioqueue/redis)")
    worker_options(dev, processes_too=False)
    dev.set_defaults(func=cmd_dev)
    # more command groups register here: each module's register(sub) adds
    # its subparsers with set_defaults(func=...) (see cli_common for helpers)
    cli_ops.register(sub)
    cli_flow.register(sub)
    for command in sub.choices.values():
        # also after the subcommand; SUPPRESS keeps the top-level value otherwise
        command.add_argument("--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS,
                             help="DEBUG, INFO (default), WARNING or ERROR")
        command.add_argument("--log-format", default=argparse.SUPPRESS,
                             choices=["text", "json"],
                             help="text lines (default) or one JSON object per line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # children of --processes
    logs.configure(getattr(logging, args.log_level), json_format=args.log_format == "json")
    try:
        result: int = args.func(args)
        return result
    except CommandError as exc:
        print(f"aioqueue: error: {exc}", file=sys.stderr)
        return 2
    except AioqueueError as exc:
        print(f"aioqueue: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
