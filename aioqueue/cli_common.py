"""What every ``aioqueue`` subcommand shares: loading the user's App, the
common arguments, and the error a user must fix (printed in one line).

Command modules (``cli.py``, ``cli_ops.py``) import this one, never each
other, so the CLI has no import cycle.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from .app import App


class CommandError(Exception):
    """A problem the user must fix; printed without a traceback."""


def load_app(target: str) -> App:
    """Import ``module:attribute`` and return the App it names."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise CommandError(f"expected MODULE:ATTRIBUTE, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise CommandError(f"cannot import module {module_name!r}: "
                           f"{type(exc).__name__}: {exc}") from exc
    if attr:
        obj: Any = getattr(module, attr, None)
        if obj is None:
            raise CommandError(f"module {module_name!r} has no attribute {attr!r}")
    else:
        apps = [v for v in vars(module).values() if isinstance(v, App)]
        if len(apps) != 1:
            raise CommandError(f"module {module_name!r} holds {len(apps)} App objects; "
                               "name one as MODULE:ATTRIBUTE")
        obj = apps[0]
    if not isinstance(obj, App):
        raise CommandError(f"{target} is a {type(obj).__name__}, not an aioqueue.App")
    return obj


def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    """``MODULE:ATTR`` and ``--url``, as every command that opens an app takes them."""
    parser.add_argument("app", metavar="MODULE:ATTR", help="where the App lives")
    parser.add_argument("--url", default=None, help="override the app's Redis URL")


def open_app(args: argparse.Namespace) -> App:
    """The App named by ``args.app``, with ``--url`` applied (not yet opened)."""
    app = load_app(args.app)
    if getattr(args, "url", None):
        app.url = args.url
    return app


def split_queues(value: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None when not given."""
    if not value:
        return None
    return [q.strip() for q in value.split(",") if q.strip()]
