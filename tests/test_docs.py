"""Every Python code block in docs/ runs, or is marked as a fragment.

Markers (see ``tests/docblocks.py``): ``<!-- fragment -->`` is not run,
``<!-- file: NAME -->`` is written for later blocks, and an unmarked Python
block runs as a script with ``AIOQUEUE_URL`` pointing at a throw-away server.

When a page wrote ``test_*.py`` files, ``pytest`` runs in its directory too
(with the aioqueue plugin's own throw-away server), and must pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO
from .docblocks import MARKER, PYTHON, blocks_of

DOCS = REPO / "docs"


PAGES = sorted(DOCS.rglob("*.md"))


def test_docs_have_pages_and_python_blocks() -> None:
    assert len(PAGES) > 10
    assert sum(b.lang in PYTHON for p in PAGES for b in blocks_of(p)) > 20


def test_every_comment_before_a_block_is_a_known_marker() -> None:
    # a misspelt marker must not silently turn a fragment into a block that runs
    for page in PAGES:
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines[1:], 1):
            previous = lines[number - 1].strip()
            if line.strip().startswith("```") and previous.startswith("<!--"):
                assert MARKER.fullmatch(previous), f"{page}:{number}: {previous}"


def _runnable(page: Path) -> bool:
    return any(b.runs or b.marker == "file" for b in blocks_of(page))


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p)],
                         ids=lambda p: str(p.relative_to(DOCS)))
def test_code_blocks_of_page_run(page: Path, aioqueue_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "AIOQUEUE_URL": aioqueue_url, "PYTHONPATH": str(tmp_path)}
    tests_written = False
    for block in blocks_of(page):
        where = f"{page.relative_to(REPO)}:{block.line}"
        if block.marker == "file":
            target = tmp_path / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.body)
            tests_written |= Path(block.file).name.startswith("test_")
        elif block.runs:
            script = tmp_path / f"block_{block.line}.py"
            script.write_text(block.body)
            done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"
    if tests_written:
        test_env = {k: v for k, v in env.items() if k != "AIOQUEUE_URL"}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                              cwd=tmp_path, env=test_env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, f"pytest in {page.name} failed:\n{done.stdout[-4000:]}"
