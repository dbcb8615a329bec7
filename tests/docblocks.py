"""Code blocks of the documentation pages, and what to do with each.

Markers, on the line before a fenced block (invisible on the site):

* ``<!-- fragment -->``: not run (a piece of a larger program, another
  library's code, or something that needs a production setup);
* ``<!-- file: NAME -->``: written to NAME in the page's working directory
  for later blocks to import (any language, e.g. a ``pytest.ini``);
* no marker: a Python block runs as a script there and must exit 0.

No dependencies beyond the standard library: CI also runs it as a script,
``python tests/docblocks.py PAGE DIR``, to lay out a page's files (say, the
getting-started project) for a fresh virtualenv to test.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

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

    @property
    def runs(self) -> bool:
        return self.marker == "run" and self.lang in PYTHON


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        marker = MARKER.fullmatch(before[-1].strip()) if before else None
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


def write_files(page: Path, directory: Path) -> list[Path]:
    """Write the page's ``file:`` blocks into ``directory``; returns the paths."""
    written = []
    for block in blocks_of(page):
        if block.marker == "file":
            target = directory / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.body)
            written.append(target)
    return written


if __name__ == "__main__":
    page_arg, directory_arg = sys.argv[1:3]
    out = Path(directory_arg)
    out.mkdir(parents=True, exist_ok=True)
    for path in write_files(Path(page_arg), out):
        print(f"wrote {path}")
