"""``aioqueue limits``: see and change rate and concurrency limits at runtime.

An operator's limit (``--set``, ``--off``; ``--max-concurrency``) is stored
in Redis and applies to the next claim of every worker; ``--clear``
(``--clear-concurrency``) goes back to the limit in code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

import anyio

from .app import App
from .broker_flow import LimitInfo
from .broker_groups import ConcurrencyLimits, GroupInfo, GroupLimit
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


def _shown(limit: object) -> str:
    return "-" if limit is None else str(limit)


def _row(queue: str, info: LimitInfo) -> dict[str, Any]:
    return {
        "kind": "rate", "queue": queue, "task": info.task, "declared": _shown(info.declared),
        "override": _shown(info.override), "effective": _shown(info.effective),
        "tokens": info.tokens, "next_start_ms": info.next_start_ms, "held": info.held,
    }


def _limit_row(queue: str, info: GroupLimit) -> dict[str, Any]:
    return {"kind": "concurrency", "queue": queue, "task": info.task,
            "declared": _shown(info.declared), "override": _shown(info.override),
            "effective": _shown(info.effective),
            "key_rate_declared": _shown(info.key_rate_declared),
            "key_rate_override": _shown(info.key_rate_override),
            "key_rate_effective": _shown(info.key_rate_effective)}


def _key_row(queue: str, info: GroupInfo) -> dict[str, Any]:
    return {"kind": "key", "queue": queue, "task": info.task, "key": info.key,
            "running": info.running, "waiting": info.waiting, "limit": info.limit,
            "override": info.override, "at_limit": info.at_limit}


def _table(headers: list[str], table: list[list[str]]) -> None:
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(headers)]
    _out("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for line in table:
        _out("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _print_table(rows: list[dict[str, Any]]) -> None:
    rates = [r for r in rows if r["kind"] == "rate"]
    limits = [r for r in rows if r["kind"] == "concurrency"]
    keys = [r for r in rows if r["kind"] == "key"]
    if not rates and not limits:
        _out("no rate limits, pauses or held jobs")
    if rates:
        _table(["queue", "task", "effective", "declared", "override", "tokens", "next in",
                "held"],
               [[r["queue"], r["task"] or "(whole queue)", r["effective"], r["declared"],
                 r["override"], "-" if r["tokens"] is None else str(r["tokens"]),
                 f"{r['next_start_ms'] / 1000:.3f}s", str(r["held"])] for r in rates])
    if limits:
        _out("")
        _table(["queue", "task", "max running per key", "declared", "override",
                "rate per key", "declared", "override"],
               [[r["queue"], r["task"], r["effective"], r["declared"], r["override"],
                 r["key_rate_effective"], r["key_rate_declared"], r["key_rate_override"]]
                for r in limits])
    if keys:
        _out("")
        _table(["queue", "task", "key", "running", "waiting", "limit", ""],
               [[r["queue"], r["task"], r["key"] or "(whole task)", str(r["running"]),
                 str(r["waiting"]), _shown(r["limit"]),
                 "at limit" if r["at_limit"] else ""] for r in keys])


async def _change_concurrency(flow: ConcurrencyLimits, queue: str,
                              args: argparse.Namespace) -> None:
    if args.task is None:
        raise CommandError("--max-concurrency, --key-rate and their --clear-... need --task")
    try:
        if args.clear_key_rate:
            await flow.clear_key_rate(queue, args.task)
            return
        if args.key_rate is not None:
            rate = args.key_rate.strip().lower()
            await flow.set_key_rate(queue, args.task, None if rate == "off" else
                                    RateLimit.parse(rate, burst=args.burst))
            return
        if args.clear_concurrency:
            await flow.clear_concurrency(queue, args.task, key=args.key)
            return
        text = args.max_concurrency.strip().lower()
        if text != "off" and not text.isdigit():
            raise CommandError(f"--max-concurrency must be a count or off, got {text!r}")
        await flow.set_concurrency(queue, args.task, None if text == "off" else int(text),
                                   key=args.key)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None


async def _change(flow: ConcurrencyLimits, queues: list[str], args: argparse.Namespace,
                  sharded: Mapping[str, int]) -> None:
    if len(queues) != 1:
        raise CommandError("--set, --off, --clear and the concurrency changes need exactly "
                           "one --queue")
    queue, task = queues[0], args.task
    if queue in sharded:
        raise CommandError(f"queue {queue!r} is sharded: rate limits and concurrency limits "
                           "are not supported there")
    if (args.max_concurrency is not None or args.clear_concurrency
            or args.key_rate is not None or args.clear_key_rate):
        await _change_concurrency(flow, queue, args)
    elif args.set is not None:
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
            flow = ConcurrencyLimits(app.broker.lane, app.prefix)
            queues = _queues(app, args)
            if (args.set is not None or args.off or args.clear
                    or args.max_concurrency is not None or args.clear_concurrency
                    or args.key_rate is not None or args.clear_key_rate):
                await _change(flow, queues, args, app.broker.shards)
            rows = [_row(q, info) for q in queues for info in await flow.limits(q)]
            rows += [_limit_row(q, info) for q in queues
                     for info in await flow.concurrency_limits(q)]
            rows += [_key_row(q, info) for q in queues for info in await flow.groups(q)]
        if args.json:
            _out(json.dumps(rows, indent=2))
        else:
            _print_table(rows)
        return 0

    return anyio.run(main)


def register(sub: Any) -> None:
    """Add ``aioqueue limits`` to the sub-command parser."""
    text = ("show the rate limits of an app's queues (tokens now, held jobs) and their "
            "concurrency limits (running and waiting per key), or change one at runtime on "
            "every worker")
    p: argparse.ArgumentParser = sub.add_parser("limits", help=text, description=text)
    add_app_arguments(p)
    p.add_argument("--queue", "--queues", dest="queue", default=None,
                   help="comma-separated queues (default: the app's queues); one for a change")
    p.add_argument("--task", default=None, help="the task's limit (default: the whole queue's)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--set", metavar="RATE", default=None,
                        help="an operator's limit, e.g. 10/s, 600/m, 1000/h (wins over code)")
    action.add_argument("--off", action="store_true", help="no limit, whatever the code says")
    action.add_argument("--clear", action="store_true",
                        help="drop the operator's limit: the code's applies again")
    action.add_argument("--max-concurrency", metavar="N", default=None,
                        help="an operator's most running jobs per key of --task (or of one "
                             "--key); 'off': no limit")
    action.add_argument("--clear-concurrency", action="store_true",
                        help="drop the operator's --max-concurrency: the code's applies again")
    action.add_argument("--key-rate", metavar="RATE", default=None,
                        help="an operator's rate limit of each key of --task (each key its own "
                             "limiter), e.g. 1/s (with --burst); 'off': none")
    action.add_argument("--clear-key-rate", action="store_true",
                        help="drop the operator's --key-rate: the code's applies again")
    p.add_argument("--key", default=None,
                   help="one concurrency key of --task (with --max-concurrency or "
                        "--clear-concurrency)")
    p.add_argument("--burst", type=int, default=1,
                   help="starts allowed at once (with --set or --key-rate)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_limits)
