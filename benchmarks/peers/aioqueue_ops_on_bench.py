"""aioqueue with its operations side on, busier than by default (issue 11).

The same driver as ``aioqueue_bench.py``; the worker beats every second (the
default is every 5 s), serves its Prometheus metrics (``--metrics-port``: per
task outcome counters and run-time histograms kept for every job) and a
thread in the worker process scrapes that endpoint every second (Prometheus
usually scrapes every 15 s). Tracing stays off (see ``aioqueue_traced``).
Compare with ``aioqueue_ops_off`` in the same run.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import urllib.request

from _common import QUEUE, main
from aioqueue_bench import Aioqueue, build

import aioqueue
from aioqueue.cli_workers import worker_metrics

ON = dataclasses.replace(aioqueue.WorkerSettings(), heartbeat_interval_s=1.0)
SCRAPE_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape_forever(port: int, stop: threading.Event) -> None:
    while not stop.wait(SCRAPE_S):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                r.read()
        except OSError:
            pass


class AioqueueOpsOn(Aioqueue):
    name = "aioqueue_ops_on"
    notes = {**Aioqueue.notes, "general": Aioqueue.notes["general"] + " Heartbeat every 1 s, "
             "metrics endpoint on (per-task histograms) and scraped every 1 s in-process; "
             "tracing off."}

    async def run_worker(self, url: str, concurrency: int) -> None:
        app, _ = build(url)
        supervisor = aioqueue.Supervisor(app, queues=[QUEUE], concurrency=concurrency,
                                         settings=ON)
        port = free_port()
        stop_metrics = worker_metrics(supervisor, port)
        stop = threading.Event()
        scraper = threading.Thread(target=scrape_forever, args=(port, stop), daemon=True)
        scraper.start()
        try:
            await supervisor.run()
        finally:
            stop.set()
            stop_metrics()


if __name__ == "__main__":
    main(AioqueueOpsOn())
