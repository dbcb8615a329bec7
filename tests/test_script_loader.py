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


def test_an_indented_include_is_inlined_inside_its_function() -> None:
    """The helpers of rare paths (unique keys, groups, overrides in enqueue)
    are closures of a function the script calls only on that path, so a
    plain enqueue does not pay for making them on every call."""
    source = load_script("enqueue").source
    assert "\n  local function unique_args(" in source
    assert "\nlocal function unique_args(" not in source
    assert "\n  local function group_push(" in source


def test_an_unused_nested_function_is_dropped_and_one_liners_are_whole() -> None:
    lines = [
        "local function outer()",
        "  local function inner_unused(x)", "    return x", "  end",
        "  local function inner_used(x)", "    return x", "  end",
        "  return inner_used",
        "end",
        "local function one() return 1 end",
        "return outer()(1)",
    ]
    assert _drop_unused(lines) == [
        "local function outer()",
        "  local function inner_used(x)", "    return x", "  end",
        "  return inner_used",
        "end",
        "return outer()(1)",
    ]


def test_comment_lines_are_not_sent() -> None:
    for name in SCRIPT_NAMES:
        assert not any(line.lstrip().startswith("--")
                       for line in load_script(name).source.splitlines()), name
