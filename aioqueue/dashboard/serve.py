"""``aioqueue dashboard``: serve the dashboard of an app with uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import os

from ..cli_common import CommandError, open_app
from .app import create_dashboard

TOKEN_ENV = "AIOQUEUE_DASHBOARD_TOKEN"


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise CommandError(f"--bind wants HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise CommandError("the dashboard needs: pip install 'aioqueue[dashboard]'") from exc
    host, port = parse_bind(args.bind)
    token = os.environ.get(TOKEN_ENV) or None
    if args.no_auth:
        if not is_loopback(host):
            raise CommandError("--no-auth is only allowed on a loopback address")
        dashboard = create_dashboard(open_app(args), auth=None, read_only=args.read_only,
                                     open_app=True)
    elif token:
        dashboard = create_dashboard(open_app(args), token=token, read_only=args.read_only,
                                     open_app=True)
    else:
        raise CommandError(f"set {TOKEN_ENV} (16+ characters) to protect the dashboard, "
                           "or pass --no-auth on a loopback address")
    uvicorn.run(dashboard, host=host, port=port, log_level="info", lifespan="on")
    return 0
