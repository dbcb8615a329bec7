"""The examples run as written; the CLI's dev command starts a usable server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
