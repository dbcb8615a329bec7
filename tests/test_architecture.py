"""The package's shape: no import cycle, and the public names are the
documented ones."""

from __future__ import annotations

import re

import aioqueue

from .conftest import REPO
from .import_graph import find_cycle, package_graph


def test_aioqueue_import_graph_has_no_cycle() -> None:
    # every import counts, including `if TYPE_CHECKING:` and lazy ones
    cycle = find_cycle(package_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_find_cycle_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _documented_names() -> set[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Public API", 1)[1].split("\n## ", 1)[0]
    listed = section[section.index("\n- "):]  # the bullet list, not its intro
    return set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", listed))


def test_exported_names_are_the_documented_ones() -> None:
    assert set(aioqueue.__all__) == _documented_names()
    assert len(aioqueue.__all__) == len(set(aioqueue.__all__))


def test_all_is_sorted_and_importable() -> None:
    assert list(aioqueue.__all__) == sorted(aioqueue.__all__)
    for name in aioqueue.__all__:
        assert getattr(aioqueue, name) is not None, name
