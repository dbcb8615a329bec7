"""Every Python code block in docs/ runs, or is marked as a fragment.

Markers, on the line before a fenced block (invisible on the site):

* ``<!-- fragment -->``: not run (a piece of a larger program, another
  library's code, or something that needs a production setup);
* ``<!-- file: NAME -->``: written to NAME in the page's working directory
  for later blocks to import (any language, e.g. a ``pytest.ini``);
* no marker: the block runs as a script there (``python block.py``) with
  ``AIOQUEUE_URL`` pointing at a throw-away server, and must exit 0.

When a page wrote ``test_*.py`` files, ``pytest`` runs in its directory too
(with the aioqueue plugin's own throw-away server), and must pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO

DOCS = REPO / "docs"
FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$",
    re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!--\s*(fragment|file:\s*(?P<name>[\w./-]+))\s*-->")
PYTHON = {"python", "py", "python3"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    body: str
    marker: str  # "run" | "fragment" | "file"
    file: str = ""


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        previous = before[-1].strip() if before else ""
        marker = MARKER.fullmatch(previous)
        indent = len(match["indent"])
        body = "".join(line[indent:] + "\n" for line in match["body"].splitlines())
        line = text.count("\n", 0, match.start()) + 1
        if marker is None:
            kind, name = "run", ""
        elif marker["name"]:
            kind, name = "file", marker["name"]
        else:
            kind, name = "fragment", ""
        found.append(Block(page, line, match["lang"].lower(), body, kind, name))
    return found


PAGES = sorted(DOCS.rglob("*.md"))


def test_docs_have_pages_and_python_blocks() -> None:
    assert len(PAGES) > 10
    assert sum(b.lang in PYTHON for p in PAGES for b in blocks_of(p)) > 20


def test_every_marker_is_known_and_stands_before_a_block() -> None:
    for page in PAGES:
        text = page.read_text()
        used = {b.line for b in blocks_of(page)}
        for number, line in enumerate(text.splitlines(), 1):
            if "<!--" in line and MARKER.search(line):
                following = text.splitlines()[number:number + 2]
                assert any(s.strip().startswith("```") for s in following), (page, number)
        assert used or "```" not in text, page


def _runnable(page: Path) -> bool:
    return any(b.marker != "fragment" and b.lang in PYTHON for b in blocks_of(page))


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
        elif block.marker == "run" and block.lang in PYTHON:
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
