"""aioqueue at an earlier git revision (benchmarks/.venvs/aioqueue_base, made by
``python -m benchmarks.setup_peers --base-ref REF``): the same driver as aioqueue_bench.py,
run in that venv, so one benchmark run compares the working tree with the earlier code."""

from __future__ import annotations

from _common import main
from aioqueue_bench import Aioqueue


class AioqueueBase(Aioqueue):
    name = "aioqueue_base"


if __name__ == "__main__":
    main(AioqueueBase())
