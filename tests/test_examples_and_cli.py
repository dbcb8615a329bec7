"""The examples run as written; the CLI's dev command starts a usable server."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from aioqueue.cli import build_parser
from aioqueue.server import free_port

from .conftest import REPO


def _run(args: list[str], url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIOQUEUE_URL": url, "PYTHONPATH": str(REPO)}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, check=False)


def test_dev_command_serves_quickstart(tmp_path: Path) -> None:
    # Given `aioqueue dev` running the quickstart app's worker on its own server
    port = free_port()
    dev = subprocess.Popen(
        [sys.executable, "-m", "aioqueue", "dev", "examples.quickstart:app",
         "--port", str(port), "--dir", str(tmp_path / "data")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert dev.stdout is not None
        lines = []
        for line in dev.stdout:
            lines.append(line)
            if "worker" in line and "queues=" in line:
                break
        url = f"redis://127.0.0.1:{port}/0"
        assert any(url in line for line in lines), lines
        # When the producer runs against it without a worker of its own
        done = _run([sys.executable, "examples/quickstart.py", "--no-worker"], url)
        # Then the dev worker ran the jobs, with AOF persistence on disk
        assert done.returncode == 0, done.stderr + "".join(lines)
        assert "1 + 2 = 3" in done.stdout
        assert any((tmp_path / "data").rglob("*.aof*"))
    finally:
        dev.terminate()
        assert dev.wait(20) == 0


Parsers = list[tuple[str, argparse.ArgumentParser]]


def _parsers(parser: argparse.ArgumentParser, path: str) -> Parsers:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _parsers(child, f"{path} {name}")
    return found


def test_every_cli_command_and_option_has_help_text() -> None:
    # Given every command of `aioqueue` and every argument it takes
    missing = []
    for path, parser in _parsers(build_parser(), "aioqueue"):
        if path != "aioqueue" and not parser.description:
            missing.append(f"{path}: no description in its own --help")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            # Then each says what it is for in --help
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path}: {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_worker_options_name_only_options_the_command_has() -> None:
    # `aioqueue dev` shares the worker's options but has no --processes
    dev = dict(_parsers(build_parser(), "aioqueue"))["aioqueue dev"]
    for action in dev._actions:
        if action.help and "--processes" in action.help:
            raise AssertionError(f"dev {action.option_strings} mentions --processes")


def test_limits_takes_queues_under_the_name_info_uses() -> None:
    # `aioqueue info --queues a,b` and `aioqueue limits --queues a,b` read alike
    args = build_parser().parse_args(["limits", "tests.cli_app:app", "--queues", "a,b"])
    assert args.queue == "a,b"


def test_log_format_works_after_the_subcommand_like_log_level() -> None:
    parser = build_parser()
    args = parser.parse_args(["worker", "tests.cli_app:app", "--log-format", "json",
                              "--log-level", "DEBUG"])
    assert (args.log_format, args.log_level) == ("json", "DEBUG")
    # before the subcommand still works, and is not reset by the subcommand's default
    args = parser.parse_args(["--log-format", "json", "info", "tests.cli_app:app"])
    assert args.log_format == "json"
