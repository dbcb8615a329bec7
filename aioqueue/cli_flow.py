"""``aioqueue limits``: see and change rate limits at runtime.

An operator's limit (``--set``, ``--off``) is stored in Redis and applies to
the next claim of every worker; ``--clear`` goes back to the limit in code.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio

from .app import App
from .broker_flow import FlowLimits, LimitInfo
from .cli_common import CommandError, add_app_arguments, open_app, split_queues
from .errors import ConfigurationError
from .flow import RateLimit


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _queues(app: App, args: argparse.Namespace) -> list[str]:
    given = split_queues(args.queue)
    if given:
        return given
    return sorted({app.default_queue, *(t.queue for t in app.tasks.values())})


def _shown(limit: RateLimit | str | None) -> str:
    return "-" if limit is None else str(limit)


def _row(queue: str, info: LimitInfo) -> dict[str, Any]:
    return {
        "queue": queue, "task": info.task, "declared": _shown(info.declared),
        "override": _shown(info.override), "effective": _shown(info.effective),
        "tokens": info.tokens, "next_start_ms": info.next_start_ms, "held": info.held,
    }


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        _out("no rate limits, pauses or held jobs")
        return
    headers = ["queue", "task", "effective", "declared", "override", "tokens", "next in",
               "held"]
    table = [[r["queue"], r["task"] or "(whole queue)", r["effective"], r["declared"],
              r["override"], "-" if r["tokens"] is None else str(r["tokens"]),
              f"{r['next_start_ms'] / 1000:.3f}s", str(r["held"])] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(headers)]
    _out("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for line in table:
        _out("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))


async def _change(flow: FlowLimits, queues: list[str], args: argparse.Namespace) -> None:
    if len(queues) != 1:
        raise CommandError("--set, --off and --clear need exactly one --queue")
    queue, task = queues[0], args.task
    if args.set is not None:
        try:
            limit = RateLimit.parse(args.set, burst=args.burst)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None
        await flow.set_override(queue, task, limit)
    elif args.off:
        await flow.set_override(queue, task, None)
    else:
        await flow.clear_override(queue, task)


def cmd_limits(args: argparse.Namespace) -> int:
    app = open_app(args)

    async def main() -> int:
        async with app:
            flow = FlowLimits(app.broker.lane, app.prefix)
            queues = _queues(app, args)
            if args.set is not None or args.off or args.clear:
                await _change(flow, queues, args)
            rows = [_row(q, info) for q in queues for info in await flow.limits(q)]
        if args.json:
            _out(json.dumps(rows, indent=2))
        else:
            _print_table(rows)
        return 0

    return anyio.run(main)


def register(sub: Any) -> None:
    """Add ``aioqueue limits`` to the sub-command parser."""
    text = ("show the rate limits of an app's queues (tokens now, held jobs), or change "
            "one at runtime on every worker")
    p: argparse.ArgumentParser = sub.add_parser("limits", help=text, description=text)
    add_app_arguments(p)
    p.add_argument("--queue", default=None,
                   help="comma-separated queues (default: the app's queues); one for a change")
    p.add_argument("--task", default=None, help="the task's limit (default: the whole queue's)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--set", metavar="RATE", default=None,
                        help="an operator's limit, e.g. 10/s, 600/m, 1000/h (wins over code)")
    action.add_argument("--off", action="store_true", help="no limit, whatever the code says")
    action.add_argument("--clear", action="store_true",
                        help="drop the operator's limit: the code's applies again")
    p.add_argument("--burst", type=int, default=1, help="starts allowed at once (with --set)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_limits)
