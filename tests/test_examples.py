"""Every example runs as written and shows what its first line says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

EXAMPLES = REPO / "examples"

# what each example must print (besides exiting 0)
EXPECTED = {
    "quickstart.py": ["1 + 2 = 3", "2 + 3 = 5", "by name: HELLO!", "batch: [0, 2, 4, 6, 8]"],
    "retries_and_dead_letters.py": ["ready after 3 attempts", "failed after 4 attempt(s)",
                                    "failed after 1 attempt(s): ValueError",
                                    "replayed invoice: 2"],
    "workflows.py": ["chain: chars: 22", "group: [6, 6, 6, 6]", "chord: 6"],
    "periodic.py": ["heartbeat(s) for", "schedule heartbeat: every 1s"],
    "progress_and_cancel.py": ["resize: succeeded 4/4 resized", "cancel: requested",
                               "finally block ran", "transcode: cancelled"],
    "fastapi_app.py": ['"status": "succeeded"', "'pages': 3", "no-such-job -> 404"],
    "aiohttp_app.py": ['"status": "succeeded"', '"pages": 3', "no-such-job -> 404"],
    "django_app.py": ['"status": "succeeded"', "'pages': 3", "no-such-job -> 404"],
}


def _run(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO, check=False)


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


def test_every_file_in_examples_says_what_it_shows_on_its_first_line() -> None:
    for path in sorted(EXAMPLES.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        first = path.read_text().splitlines()[0] if path.read_text() else ""
        assert first.startswith(('"""', "#", ";")) and len(first.strip('"#; ')) > 10, path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_and_prints_what_it_shows(name: str, aioqueue_url: str) -> None:
    env = {**os.environ, "AIOQUEUE_URL": aioqueue_url, "PYTHONPATH": str(REPO)}
    done = _run(EXAMPLES / name, env)
    assert done.returncode == 0, done.stderr[-3000:]
    for fragment in EXPECTED[name]:
        assert fragment in done.stdout, (fragment, done.stdout)


def test_quickstart_without_a_server_starts_the_embedded_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "AIOQUEUE_URL"}
    done = _run(EXAMPLES / "quickstart.py", env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 + 2 = 3" in done.stdout


def test_quickstart_producer_alone_says_it_needs_a_worker() -> None:
    # the producer-only mode used to wait silently for a worker that was not there
    env = {k: v for k, v in os.environ.items() if k != "AIOQUEUE_URL"}
    done = _run(EXAMPLES / "quickstart.py", env, "--no-worker")
    assert done.returncode == 1
    assert "needs a worker" in done.stderr
