"""aioqueue with its operations side turned off (issue 11, "overhead on vs off").

The same driver as ``aioqueue_bench.py``, but the worker writes no heartbeats
(``WorkerSettings(heartbeat=False)``) and serves no metrics. Compare with
``aioqueue_ops_on`` (heartbeats every second, the metrics endpoint scraped
every second) in the same run:
``python -m benchmarks --peers aioqueue_ops_off,aioqueue_ops_on``.

The per-minute counters written inside ``settle.lua``/``reap.lua`` have no
switch: they are in both variants (their cost shows in the Redis commands per
job column, next to ``aioqueue_base`` built from a revision before them).
"""

from __future__ import annotations

import dataclasses

from _common import QUEUE, main
from aioqueue_bench import Aioqueue, build

import aioqueue

OFF = dataclasses.replace(aioqueue.WorkerSettings(), heartbeat=False)


class AioqueueOpsOff(Aioqueue):
    name = "aioqueue_ops_off"
    notes = {**Aioqueue.notes, "general": Aioqueue.notes["general"] + " Heartbeats off "
             "(WorkerSettings(heartbeat=False)), no metrics endpoint."}

    async def run_worker(self, url: str, concurrency: int) -> None:
        app, _ = build(url)
        await aioqueue.Supervisor(app, queues=[QUEUE], concurrency=concurrency,
                                  settings=OFF).run()


if __name__ == "__main__":
    main(AioqueueOpsOff())
