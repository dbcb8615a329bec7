"""mypy accepts correct enqueue calls and rejects mistyped ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

CASES = Path(__file__).parent / "typing_cases"


def _mypy(path: Path) -> tuple[str, int]:
    out, err, status = api.run(["--strict", "--no-incremental", "--show-error-codes",
                                "--no-error-summary", str(path)])
    return out + err, status


def test_correct_calls_type_check() -> None:
    out, status = _mypy(CASES / "cases_ok.py")
    assert status == 0, out


def test_mistyped_enqueue_is_rejected() -> None:
    path = CASES / "cases_bad.py"
    expected: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        m = re.search(r"# E: ([\w-]+)", line)
        if m:
            expected[lineno] = m.group(1)
    out, status = _mypy(path)
    assert status != 0
    found: dict[int, set[str]] = {}
    for m in re.finditer(r"cases_bad\.py:(\d+): error: .*\[([\w-]+)\]", out):
        found.setdefault(int(m.group(1)), set()).add(m.group(2))
    for lineno, code in expected.items():
        assert code in found.get(lineno, set()), f"line {lineno}: expected [{code}]\n{out}"
    unexpected = set(found) - set(expected)
    assert not unexpected, f"errors on unmarked lines {unexpected}\n{out}"
