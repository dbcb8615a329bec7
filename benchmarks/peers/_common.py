"""Shared measurement harness for the per-peer driver scripts.

This module is imported by every ``<peer>_bench.py`` and runs inside that peer's own
virtualenv, so it may only depend on the standard library and redis-py (installed in every
peer venv). Each driver defines an :class:`Adapter` subclass and calls :func:`main`.

Modes (first CLI argument), each printing one JSON line to stdout:

``enqueue``  enqueue rates (sequential, 100 concurrent, batch) and Redis bytes per queued job.
``fill``     enqueue ``--jobs`` jobs as fast as the peer allows (batch > concurrent > serial).
``worker``   build a worker, print ``{"ready": ...}``, wait for a line on stdin, run the worker
             until SIGUSR2, then print ``{"cpu_s": ...}`` and exit. CPU is os.times() of this
             process (+ reaped children, for forking workers) from "go" to SIGUSR2.
``online``   with a worker already running: end-to-end latency at a fixed offered rate,
             enqueue->result round trip, and delayed-job lateness.

The job body is identical for every peer: one pipelined round trip doing
``INCR bench:count`` + ``SADD bench:done <job_no>`` (+ ``RPUSH bench:lat <seconds>`` when the
payload carries a reference timestamp), plus ``SET bench:first`` / ``SET bench:last`` for the
first and the ``--expect``-th completion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import redis
import redis.asyncio as aredis

COUNT = "bench:count"
DONE = "bench:done"
LAT = "bench:lat"
FIRST = "bench:first"
LAST = "bench:last"
QUEUE = "bench"

EXPECT = int(os.environ.get("BENCH_EXPECT", "0") or 0)

_aclient: aredis.Redis | None = None
_sclient: redis.Redis | None = None


def bench_url() -> str:
    return os.environ["BENCH_URL"]


async def body(job_no: int, ref: float) -> int:
    """The job body every peer runs (asyncio flavour). Returns job_no."""
    global _aclient
    start = time.time()
    if _aclient is None:
        _aclient = aredis.Redis.from_url(bench_url(), max_connections=1000)
    pipe = _aclient.pipeline(transaction=False)
    pipe.incr(COUNT)
    pipe.sadd(DONE, job_no)
    if ref:
        pipe.rpush(LAT, start - ref)
    res = await pipe.execute()
    n = res[0]
    if n == 1:
        await _aclient.set(FIRST, repr(time.time()))
    if n == EXPECT:
        await _aclient.set(LAST, repr(time.time()))
    return job_no


def sync_body(job_no: int, ref: float, conn: redis.Redis | None = None) -> int:
    """The same job body for synchronous peers (rq)."""
    global _sclient
    start = time.time()
    if conn is None:
        if _sclient is None:
            _sclient = redis.Redis.from_url(bench_url())
        conn = _sclient
    pipe = conn.pipeline(transaction=False)
    pipe.incr(COUNT)
    pipe.sadd(DONE, job_no)
    if ref:
        pipe.rpush(LAT, start - ref)
    res = pipe.execute()
    n = res[0]
    if n == 1:
        conn.set(FIRST, repr(time.time()))
    if n == EXPECT:
        conn.set(LAST, repr(time.time()))
    return job_no


class Adapter:
    """What a driver implements. Unsupported features: leave the flag False."""

    name = "?"
    concurrent_enqueue = True  # can 100 enqueues be in flight at once (asyncio API)?
    has_batch = False
    has_result = True
    has_delay = True
    sync_worker = False  # run_worker_sync instead of run_worker
    notes: dict[str, str] = {}  # column -> reason, shown as a footnote
    dists: tuple[str, ...] = ()  # distributions whose versions the report shows

    async def open(self, url: str) -> None:
        """Connect the producer side."""

    async def close(self) -> None:
        """Disconnect the producer side."""

    async def after_flush(self) -> None:
        """Re-create producer-side server state after FLUSHALL (e.g. consumer groups)."""

    async def enqueue(self, job_no: int, ref: float, delay: float | None = None) -> Any:
        raise NotImplementedError

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        raise NotImplementedError

    async def wait_result(self, handle: Any, timeout: float) -> Any:
        raise NotImplementedError

    def prepare_worker(self, url: str, concurrency: int) -> None:
        """Build the worker objects (before "ready" is printed)."""

    async def run_worker(self, url: str, concurrency: int) -> None:
        raise NotImplementedError

    def run_worker_sync(self, url: str, concurrency: int) -> None:
        raise NotImplementedError


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


async def _wait_count(r: aredis.Redis, target: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(await r.get(COUNT) or 0) >= target:
            return True
        await asyncio.sleep(0.005)
    return False


async def _flush(r: aredis.Redis, a: Adapter) -> None:
    await r.flushall()
    await a.after_flush()


async def _used_memory(r: aredis.Redis) -> int:
    return int((await r.info("memory"))["used_memory"])


async def mode_enqueue(a: Adapter, url: str, n: int, batch_size: int) -> dict[str, Any]:
    r = aredis.Redis.from_url(url)
    await a.open(url)
    out: dict[str, Any] = {}
    # warm-up: connections, script loading, imports on first use
    for i in range(3):
        await a.enqueue(i, 0.0)
    if a.concurrent_enqueue:  # open the connections 100 in-flight calls need
        await asyncio.gather(*(a.enqueue(i, 0.0) for i in range(100)))
    if a.has_batch:
        await a.enqueue_batch([(i, 0.0) for i in range(3)])

    await _flush(r, a)
    mem0 = await _used_memory(r)
    t = time.perf_counter()
    for i in range(n):
        await a.enqueue(i, 0.0)
    dt = time.perf_counter() - t
    mem1 = await _used_memory(r)
    out["enq_seq"] = n / dt
    out["bytes_per_job"] = (mem1 - mem0) / n

    if a.concurrent_enqueue:
        await _flush(r, a)
        it = iter(range(n))

        async def one_lane() -> None:
            for i in it:
                await a.enqueue(i, 0.0)

        t = time.perf_counter()
        await asyncio.gather(*(one_lane() for _ in range(100)))
        out["enq_conc"] = n / (time.perf_counter() - t)

    if a.has_batch:
        await _flush(r, a)
        t = time.perf_counter()
        for start in range(0, n, batch_size):
            await a.enqueue_batch([(i, 0.0) for i in range(start, min(n, start + batch_size))])
        out["enq_batch"] = n / (time.perf_counter() - t)
    await a.close()
    await r.aclose()
    return out


async def mode_fill(a: Adapter, url: str, n: int, batch_size: int) -> dict[str, Any]:
    await a.open(url)
    t = time.perf_counter()
    if a.has_batch:
        for start in range(0, n, batch_size):
            await a.enqueue_batch([(i, 0.0) for i in range(start, min(n, start + batch_size))])
    elif a.concurrent_enqueue:
        it = iter(range(n))

        async def one_lane() -> None:
            for i in it:
                await a.enqueue(i, 0.0)

        await asyncio.gather(*(one_lane() for _ in range(100)))
    else:
        for i in range(n):
            await a.enqueue(i, 0.0)
    dt = time.perf_counter() - t
    await a.close()
    return {"fill_s": dt}


async def mode_online(a: Adapter, url: str, args: argparse.Namespace) -> dict[str, Any]:
    r = aredis.Redis.from_url(url)
    await a.open(url)
    out: dict[str, Any] = {}
    errors: list[str] = []
    # warm-up job: proves the worker loop is running
    await a.enqueue(-1, 0.0)
    target = 1
    if not await _wait_count(r, target, 60):
        return {"error": "worker did not run the warm-up job within 60 s"}

    # 1) end-to-end latency at a fixed offered rate
    m, rate = args.lat_jobs, args.rate
    pending: set[asyncio.Task[Any]] = set()
    t0 = time.perf_counter() + 0.01
    for i in range(m):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(a.enqueue(i, time.time()))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    out["offered_s"] = time.perf_counter() - t0
    target += m
    if await _wait_count(r, target, 60 + m / 20):
        lat = [float(x) for x in await r.lrange(LAT, 0, -1)]
        out["lat_p50_ms"] = pct(lat, 50) * 1e3
        out["lat_p99_ms"] = pct(lat, 99) * 1e3
    else:
        errors.append(f"latency phase: only {await r.get(COUNT)} of {target} jobs ran")
        target = int(await r.get(COUNT) or 0)
    await r.delete(LAT)

    # 2) enqueue -> awaited result, sequential, idle worker
    if a.has_result:
        rts = []
        for i in range(args.rt_jobs):
            t = time.perf_counter()
            h = await a.enqueue(10_000_000 + i, 0.0)
            await a.wait_result(h, 30)
            rts.append(time.perf_counter() - t)
        out["rt_p50_ms"] = pct(rts, 50) * 1e3
        out["rt_p99_ms"] = pct(rts, 99) * 1e3
        target += args.rt_jobs
        await _wait_count(r, target, 10)

    # 3) delayed jobs: 1 s delay, lateness = actual start - due time
    if a.has_delay:
        d = args.delay_jobs
        for i in range(d):
            due = time.time() + 1.0
            await a.enqueue(20_000_000 + i, due, delay=1.0)
            await asyncio.sleep(0.01)
        target += d
        if await _wait_count(r, target, 30):
            lat = [float(x) for x in await r.lrange(LAT, 0, -1)]
            out["delay_p50_ms"] = pct(lat, 50) * 1e3
            out["delay_p99_ms"] = pct(lat, 99) * 1e3
        else:
            errors.append(f"delay phase: only {await r.get(COUNT)} of {target} jobs ran in 30 s")
    if errors:
        out["error"] = "; ".join(errors)
    await a.close()
    await r.aclose()
    return out


def mode_worker(a: Adapter, url: str, concurrency: int) -> None:
    a.prepare_worker(url, concurrency)
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    if not sys.stdin.readline():
        os._exit(1)
    t0 = os.times()

    def stop(_signum: int, _frame: Any) -> None:
        t1 = os.times()
        cpu = (t1.user - t0.user) + (t1.system - t0.system)
        child = (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
        sys.stdout.write(json.dumps({"cpu_s": cpu + child, "cpu_children_s": child}) + "\n")
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGUSR2, stop)
    if a.sync_worker:
        a.run_worker_sync(url, concurrency)
    else:
        asyncio.run(a.run_worker(url, concurrency))
    # a worker that returns on its own (it should not) still reports
    stop(0, None)


def _versions(dists: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for d in (*dists, "redis", "hiredis"):
        try:
            out[d] = version(d)
        except PackageNotFoundError:
            pass
    return out


def main(a: Adapter) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["enqueue", "fill", "worker", "online", "info"])
    ap.add_argument("--url", default=os.environ.get("BENCH_URL", ""))
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--lat-jobs", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--rt-jobs", type=int, default=50)
    ap.add_argument("--delay-jobs", type=int, default=50)
    args = ap.parse_args()
    os.environ["BENCH_URL"] = args.url
    if args.mode == "info":
        out: dict[str, Any] = {
            "concurrent_enqueue": a.concurrent_enqueue,
            "has_batch": a.has_batch,
            "has_result": a.has_result,
            "has_delay": a.has_delay,
            "notes": a.notes,
            "versions": _versions(a.dists),
        }
    elif args.mode == "enqueue":
        out = asyncio.run(mode_enqueue(a, args.url, args.jobs, args.batch_size))
    elif args.mode == "fill":
        out = asyncio.run(mode_fill(a, args.url, args.jobs, args.batch_size))
    elif args.mode == "online":
        out = asyncio.run(mode_online(a, args.url, args))
    else:
        mode_worker(a, args.url, args.concurrency)
        return
    print(json.dumps(out), flush=True)
