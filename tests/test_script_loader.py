"""The script loader: includes inlined once, and included functions a script
never calls left out (each top-level function is a new closure on every call,
so unused helpers cost every job)."""

from __future__ import annotations

import re

from aioqueue.scripts import SCRIPT_NAMES, _drop_unused, _expand, _read, load_script

_TOP_FUNCTION = re.compile(r"^local function ([A-Za-z_][A-Za-z0-9_]*)\(", re.M)


def test_every_function_left_in_a_script_is_called_in_it() -> None:
    for name in SCRIPT_NAMES:
        source = load_script(name).source
        for fn in _TOP_FUNCTION.findall(source):
            assert len(re.findall(rf"\b{fn}\b", source)) > 1, (name, fn)


def test_functions_called_only_by_a_dropped_function_go_too() -> None:
    lines = [
        "local function leaf(x)", "  return x", "end",
        "local function caller(x)", "  return leaf(x)", "end",
        "local function used(x)", "  return x + 1", "end",
        "return used(1)",
    ]
    assert _drop_unused(lines) == ["local function used(x)", "  return x + 1", "end",
                                   "return used(1)"]


def test_a_function_a_script_calls_is_kept() -> None:
    source = load_script("settle").source
    assert "local function group_release(" in source  # a grouped job frees its slot
    assert "local function group_release(" not in load_script("enqueue").source


def test_include_style_every_top_level_function_ends_with_end_at_column_0() -> None:
    """_drop_unused finds a function's end as the first 'end' at column 0: an
    include written otherwise would be cut wrongly."""
    for name in SCRIPT_NAMES:
        lines: list[str] = []
        _expand(_read(f"{name}.lua"), lines, set())
        open_fn = None
        for line in lines:
            if _TOP_FUNCTION.match(line):
                assert open_fn is None, (name, open_fn, line)
                open_fn = line
            elif line == "end":
                open_fn = None
        assert open_fn is None, (name, open_fn)
