"""A fault scenario's moving parts: a producer app, worker subprocesses that
record their runs (``tests.fault_app``), the ids the producer was told were
enqueued, and the final check.

::

    async with Scenario(url, tmp_path) as sc:
        w = sc.spawn()                      # aioqueue worker subprocess
        await sc.enqueue_recs(100)          # acked ids are remembered
        ...inject a fault...
        await sc.wait_drained(timeout=20)
        (await sc.check()).assert_ok()
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

import aioqueue

from .. import fault_app
from ..helpers import WorkerProcess, wait_until
from .checker import Report, check, read_history, snapshot

TARGET = "tests.fault_app:app"
START_S = 15.0


class Scenario:
    def __init__(self, url: str, tmp_path: Path, *, queue: str = "default",
                 prefix: str = "aioqueue", env: dict[str, str] | None = None) -> None:
        self.url = url
        self.queue = queue
        self.prefix = prefix
        self.history_dir = tmp_path / "history"
        self.history_dir.mkdir(exist_ok=True)
        self.env = {"AQ_HISTORY_DIR": str(self.history_dir), "AQ_QUEUE": queue,
                    "AQ_PREFIX": prefix, **(env or {})}
        self.producer = fault_app.build_app(url, prefix=prefix, queue=queue)
        self.workers: list[WorkerProcess] = []
        self.acked: list[str] = []
        self.unknown: list[str] = []
        self.enqueued_at: dict[str, float] = {}

    async def __aenter__(self) -> Scenario:
        await self.producer.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close_workers()
        await self.producer.__aexit__(exc_type, exc, tb)
        if exc is not None and os.environ.get("AQ_SHOW_OUTPUT"):
            for w in self.workers:
                print(f"--- worker {w.pid} exited {w.returncode}\n{w.output}")

    def close_workers(self) -> None:
        for w in self.workers:
            w.close()

    @property
    def client(self) -> Any:
        return self.producer.broker.client

    @property
    def keys(self) -> Any:
        return self.producer.broker.keys(self.queue)

    def spawn(self, *extra: str, url: str | None = None, env: dict[str, str] | None = None,
              target: str = TARGET) -> WorkerProcess:
        proc = WorkerProcess(target, url or self.url, *extra, env={**self.env, **(env or {})})
        self.workers.append(proc)
        return proc

    async def fetchers(self) -> list[dict[str, Any]]:
        clients = await self.client.client_list()
        return [c for c in clients if c.get("name", "").startswith("aioqueue:")
                and c["name"].endswith(f":{self.queue}")]

    async def wait_fetchers(self, n: int, timeout: float = START_S) -> None:
        async def enough() -> bool:
            return len(await self.fetchers()) >= n
        await wait_until(enough, timeout, what=f"{n} fetcher(s) connected")

    async def enqueue_recs(self, n: int, seconds: float = 0.0, *, start: int = 0,
                           **options: Any) -> list[aioqueue.Job[Any]]:
        rec = self.producer.get_task("rec")
        task = rec.options(**options) if options else rec
        jobs = []
        for i in range(start, start + n):
            job = await task.enqueue(n=i, seconds=seconds)
            self.acked.append(job.id)
            self.enqueued_at[job.id] = time.monotonic()
            jobs.append(job)
        return jobs

    async def enqueue_retrying(self, n: int, *, start: int = 0, seconds: float = 0.0,
                               deadline_s: float = 30.0) -> None:
        """Enqueue ``n`` recording jobs one by one through faults: a failed
        enqueue is an unknown outcome; it is retried under the same id
        (enqueue is idempotent by id) until it is acknowledged."""
        rec = self.producer.get_task("rec")
        for i in range(start, start + n):
            job_id = f"j{i}"
            give_up = time.monotonic() + deadline_s
            while True:
                try:
                    await rec.options(job_id=job_id).enqueue(n=i, seconds=seconds)
                    self.acked.append(job_id)
                    self.enqueued_at.setdefault(job_id, time.monotonic())
                    break
                except aioqueue.BrokerError:
                    self.unknown.append(job_id)
                    if time.monotonic() > give_up:
                        raise
                    await anyio.sleep(0.05)

    async def counts(self) -> dict[str, int]:
        return await self.producer.broker.counts(self.queue)

    async def stats(self) -> dict[str, int]:
        return await self.producer.broker.stats(self.queue)

    async def wait_drained(self, timeout: float) -> None:
        """Wait until nothing is waiting, running or scheduled and every
        acked job has ended."""
        state: dict[str, object] = {}

        async def drained() -> bool:
            c = await self.counts()
            state["counts"] = c
            if c["waiting"] or c["running"] or c["scheduled"]:
                return False
            for job_id in self.acked:
                status = await self.client.hget(self.keys.job(job_id), "st")
                if status not in ("succeeded", "failed", "cancelled"):
                    state["unfinished"] = (job_id, status)
                    return False
            return True
        try:
            await wait_until(drained, timeout, what="the queue to drain", interval=0.1)
        except AssertionError as exc:
            # say what was left: an unfinished job with no record is a lost enqueue
            raise AssertionError(f"{exc}; left: {state}; stats: {await self.stats()}") from None

    async def stop_workers(self, timeout: float = 15.0) -> dict[int, int]:
        """SIGTERM every live worker and wait for it to exit; returns exit codes
        by pid. A worker settles what it finished before it exits, so after
        this no late outcome is still on its way."""
        live = [w for w in self.workers if w.returncode is None]
        for w in live:
            w.send(signal.SIGCONT)
            w.send(signal.SIGTERM)
        return {w.pid: await w.wait_exit(timeout) for w in live}

    async def check(self, *, drained: bool = True, workers_killed: bool = False,
                    stop: bool = True) -> Report:
        """Stop the workers (each must exit 0), then check the invariants."""
        if stop:
            codes = await self.stop_workers()
            bad = {pid: code for pid, code in codes.items() if code != 0}
            assert not bad, f"workers exited non-zero on SIGTERM: {bad}\n" + "\n".join(
                w.output[-3000:] for w in self.workers if w.pid in bad)
        snap = await snapshot(self.client, self.prefix, self.queue)
        return check(self.acked, read_history(self.history_dir), snap, unknown=self.unknown,
                     drained=drained, workers_killed=workers_killed)

    def runs(self) -> Any:
        return read_history(self.history_dir)

