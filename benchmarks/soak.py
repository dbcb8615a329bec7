"""Soak test: continuous load under a seeded random nemesis.

::

    python benchmarks/soak.py --seconds 60 [--seed 1] [--workers 3] [--rate 200]

Starts its own server (AOF on, ``appendfsync everysec``) and a TCP fault proxy
in front of it; worker processes (``benchmarks.soak_app``) connect through the
proxy, producers directly. Producers enqueue continuously: 80% immediate, 20%
delayed 0.1-2 s, priorities -5/0/5, 5% of jobs failing for good, 1% slow
(2-4 s: several leases, kept by renewals). A failed enqueue is an unknown
outcome, retried under the same job id until acknowledged.

The nemesis picks a fault every 1.5-4 s (seeded): worker SIGKILL, SIGTERM or
SIGSTOP (0.5-2.5 s), Redis SIGKILL + restart or SIGSTOP (0.5-2 s), CLIENT
KILL of a fetcher's blocking connection, a cut of every proxied connection,
a lost claim/settle reply, a busy script (another client's Lua loop of
0.5-1.2 s: every other command gets ``BUSY`` meanwhile) or cancellations (a
running slow job and a few recent ones), and network faults
(``benchmarks/soak_network.py``): a slow, lossy link (200 ms each way, 30%
packet loss as TCP delays) for every worker, and, where network namespaces
can be made (root, ``ip netns``), worker 0 in its own namespace whose link is
cut (0.3-3 s) or flaps; elsewhere the soak prints why partitions are off.
Killed and stopped workers are restarted. Among the jobs, 1% raise
``SystemExit`` and 1% fail with an error text holding a lone surrogate: each
must fail only its job.

At the end every fault is healed, the queue must drain, and
:func:`tests.harness.checker.check` judges the histories; the table shows
jobs, faults by type, lost (must be 0), duplicates (each explained by a
counted lease expiry), stale acks, orphans recovered and latency. Exit status
1 if the checker found a violation.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import redis
import redis.asyncio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aioqueue  # noqa: E402
from aioqueue.scripts import load_script  # noqa: E402
from aioqueue.server import ServerProcess  # noqa: E402
from benchmarks import soak_app  # noqa: E402
from benchmarks.soak_network import Network  # noqa: E402
from tests.harness.checker import check, read_history, snapshot  # noqa: E402
from tests.harness.proxy import FaultProxy  # noqa: E402

BUSY_LOOP = """
local t = redis.call('TIME')
local stop = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
while true do
  local n = redis.call('TIME')
  if tonumber(n[1]) * 1000 + math.floor(tonumber(n[2]) / 1000) >= stop then return 1 end
end
"""


class Worker:
    def __init__(self, argv: list[str], env: dict[str, str], log_dir: Path, index: int
                 ) -> None:
        self.argv, self.env, self.log_dir, self.index = argv, env, log_dir, index
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"worker{self.index}.{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            self.argv, env={**os.environ, "PYTHONPATH": str(REPO), **self.env}, cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.stopped = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, sig)

    def ensure(self) -> None:
        if self.stopped:
            self.signal(signal.SIGCONT)
            self.stopped = False
        if not self.alive():
            self.start()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="aioqueue-soak-"))
        self.history = self.tmp / "history"
        self.history.mkdir()
        self.server = ServerProcess(directory=self.tmp / "redis", appendonly=True,
                                    appendfsync="everysec")
        # Redis >= 7 and Valkey run the scripts with their shebang flags, so
        # their SHAs (which the lost-reply traps look for) are the flagged ones
        version = tuple(int(x) for x in (self.server.binary.version or "0").split(".")[:2])
        self.script_flags = self.server.binary.kind == "valkey" or version >= (7, 0)
        self.faults: collections.Counter[str] = collections.Counter()
        self.acked: list[str] = []
        self.unknown: list[str] = []
        self.planned_fail: set[str] = set()
        self.slow: list[str] = []
        self.cancels = 0
        self.enqueue_errors = 0
        self.running = True
        self.redis_paused = False
        self.network = Network(random.Random(args.seed + 1), partitions=args.partitions)

    async def run(self) -> int:
        print(self.network.setup(), flush=True)
        self.server.start()
        async with FaultProxy.for_url(self.server.url,
                                      also_listen_on=self.network.listen_on) as proxy:
            self.proxy = proxy
            env = {"AQ_HISTORY_DIR": str(self.history)}
            argv = [sys.executable, "-m", "aioqueue", "worker", "benchmarks.soak_app:app",
                    "--concurrency", "50"]
            self.workers = [Worker(self.network.worker(i, argv, proxy), env, self.tmp, i)
                            for i in range(self.args.workers)]
            for w in self.workers:
                w.start()
            self.app = soak_app.build_app(self.server.url)
            async with self.app:
                started = time.monotonic()
                async with anyio.create_task_group() as tg:
                    for i in range(self.args.producers):
                        tg.start_soon(self.producer, i)
                    tg.start_soon(self.nemesis)
                    tg.start_soon(self.nanny)
                    await anyio.sleep(self.args.seconds)
                    self.running = False
                    tg.cancel_scope.cancel()
                self.heal()
                load_s = time.monotonic() - started
                drained = await self.drain()
                for w in self.workers:
                    w.signal(signal.SIGTERM)
                await anyio.sleep(1.0)
                for w in self.workers:
                    w.kill()
                return await self.report(load_s, drained)

    def heal(self) -> None:
        self.server.resume()
        self.redis_paused = False
        if self.server.process is None or self.server.process.poll() is not None:
            self.server.start()
        self.proxy.set_mode("pass")
        self.proxy.degrade()
        self.network.heal()
        self.proxy.traps.clear()
        for w in self.workers:
            w.ensure()

    async def producer(self, index: int) -> None:
        rng = random.Random(self.args.seed * 1000 + index)
        task = self.app.get_task("work")
        per_s = self.args.rate / self.args.producers
        n = 0
        while True:
            n += 1
            job_id = f"p{index}-{n}"
            options: dict[str, Any] = {"job_id": job_id,
                                       "priority": rng.choice((-5, 0, 0, 0, 5))}
            if rng.random() < 0.2:
                options["delay"] = rng.uniform(0.1, 2.0)
            fail = rng.random() < 0.05
            seconds = rng.uniform(2.0, 4.0) if rng.random() < 0.01 else 0.0
            draw = rng.random()
            mode = "exit" if draw < 0.01 else "surrogate" if draw < 0.02 else ""
            while True:
                try:
                    with anyio.fail_after(10):
                        await task.options(**options).enqueue(n, fail=fail, seconds=seconds,
                                                              mode=mode)
                    self.acked.append(job_id)
                    if fail or mode:
                        self.planned_fail.add(job_id)
                    if seconds:
                        self.slow.append(job_id)
                    break
                except (aioqueue.BrokerError, TimeoutError):
                    self.enqueue_errors += 1
                    self.unknown.append(job_id)
                    await anyio.sleep(0.1)
                except BaseException:
                    # the load phase ended (cancelled) mid-enqueue: the write
                    # may have happened, so its outcome is unknown, not absent
                    self.unknown.append(job_id)
                    raise
            await anyio.sleep(rng.expovariate(per_s))

    async def nanny(self) -> None:
        """Restart workers that died (the nemesis kills them; so may a bug)."""
        while True:
            await anyio.sleep(0.5)
            for w in self.workers:
                if not w.alive():
                    w.start()

    async def nemesis(self) -> None:
        kinds = ["worker_sigkill", "worker_sigterm", "worker_sigstop", "redis_sigkill",
                 "redis_sigstop", "client_kill", "proxy_cut", "lost_claim_reply",
                 "lost_settle_reply", "busy_script", "cancel", *self.network.kinds]
        if self.args.faults:
            kinds = [k for k in kinds if k in self.args.faults.split(",")]
        await anyio.sleep(2.0)
        while True:
            await anyio.sleep(self.rng.uniform(1.5, 4.0))
            kind = self.rng.choice(kinds)
            self.faults[kind] += 1
            worker = self.rng.choice(self.workers)
            if kind == "worker_sigkill":
                worker.signal(signal.SIGKILL)
            elif kind == "worker_sigterm":
                worker.signal(signal.SIGTERM)
            elif kind == "worker_sigstop":
                worker.signal(signal.SIGSTOP)
                worker.stopped = True
                await anyio.sleep(self.rng.uniform(0.5, 2.5))
                worker.signal(signal.SIGCONT)
                worker.stopped = False
            elif kind == "redis_sigkill":
                await anyio.to_thread.run_sync(self.server.restart)
            elif kind == "redis_sigstop":
                self.server.pause()
                self.redis_paused = True
                await anyio.sleep(self.rng.uniform(0.5, 2.0))
                self.server.resume()
                self.redis_paused = False
            elif kind == "client_kill":
                try:
                    clients = await self.app.broker.client.client_list()
                    fetchers = [c for c in clients if c.get("name", "").startswith("aioqueue:")]
                    if fetchers:
                        victim = self.rng.choice(fetchers)
                        await self.app.broker.client.execute_command(
                            "CLIENT", "KILL", "ID", victim["id"])
                except aioqueue.BrokerError:
                    pass
                except Exception:  # redis-py errors during a restart
                    pass
            elif kind == "proxy_cut":
                self.proxy.reset_all()
            elif kind == "lost_claim_reply":
                claim_sha = load_script("claim", flags=self.script_flags).sha
                self.proxy.lose_reply(claim_sha, reply_contains="p")
            elif kind == "lost_settle_reply":
                self.proxy.lose_reply(load_script("settle", flags=self.script_flags).sha)
            elif kind == "busy_script":
                await self.busy_script(self.rng.uniform(0.5, 1.2))
            elif kind == "cancel":
                await self.cancel_some()
            else:
                await self.network.inject(kind, self.proxy)

    async def busy_script(self, seconds: float) -> None:
        """Another client runs a Lua loop past the busy threshold: meanwhile
        the server answers every other command with ``BUSY``."""
        client = redis.asyncio.Redis.from_url(self.server.url, socket_timeout=seconds + 5)
        try:
            for name in ("busy-reply-threshold", "lua-time-limit"):
                with contextlib.suppress(redis.ResponseError):
                    await client.config_set(name, "200")
                    break
            await client.eval(BUSY_LOOP, 0, int(seconds * 1000))
        except (redis.RedisError, OSError):
            pass  # the server was being restarted: no busy script this time
        finally:
            await client.aclose()

    async def cancel_some(self) -> None:
        """Cancel a slow job (likely running) and three recent ones."""
        picks = self.slow[-3:][:1] + self.acked[-200:][::67][:3]
        for job_id in picks:
            try:
                with anyio.fail_after(5):
                    await self.app.job(job_id).cancel("cancelled by the nemesis")
                self.cancels += 1
            except (aioqueue.BrokerError, TimeoutError):
                pass

    async def drain(self) -> bool:
        broker = self.app.broker
        deadline = time.monotonic() + self.args.drain_s
        while time.monotonic() < deadline:
            try:
                counts = await broker.counts("soak")
                if not (counts["waiting"] or counts["running"] or counts["scheduled"]):
                    return True
            except aioqueue.BrokerError:
                pass
            await anyio.sleep(0.2)
        return False

    async def report(self, load_s: float, drained: bool) -> int:
        client = self.app.broker.client
        snap = await snapshot(client, "soak", "soak")
        runs = read_history(self.history)
        # what the producers were told, kept beside the histories for a re-check
        (self.tmp / "acked.txt").write_text("\n".join(self.acked) + "\n")
        (self.tmp / "unknown.txt").write_text("\n".join(self.unknown) + "\n")
        result = check(self.acked, runs, snap, unknown=self.unknown, workers_killed=True)
        latencies = []
        for record in snap.records.values():
            if record.get("st") == "succeeded" and record.get("tf") and record.get("et"):
                ready = max(int(record["et"]), int(record.get("due") or 0))
                latencies.append(int(record["tf"]) - ready)
        latencies.sort()

        def pct(p: float) -> str:
            if not latencies:
                return "-"
            return f"{latencies[min(len(latencies) - 1, int(p * len(latencies)))]} ms"

        stats = snap.stats
        failed_ok = sum(1 for j in self.planned_fail
                        if snap.records.get(j, {}).get("st") == "failed")
        rows = [
            ("seconds of load (seed)", f"{load_s:.0f} ({self.args.seed})"),
            ("workers / producers", f"{self.args.workers} / {self.args.producers}"),
            ("jobs acknowledged", str(len(set(self.acked)))),
            ("  succeeded", str(sum(1 for r in snap.records.values()
                                    if r.get("st") == "succeeded"))),
            ("  failed (planned 7%)", f"{stats.get('failed', 0)} ({failed_ok} planned)"),
            ("  cancelled", f"{stats.get('cancelled', 0)} ({self.cancels} requests)"),
            ("enqueue errors retried (unknown outcome)", str(self.enqueue_errors)),
            ("network partitions", "on" if self.network.reason is None
             else f"off ({self.network.reason})"),
            ("faults injected", str(sum(self.faults.values()))),
            *((f"  {k}", str(v)) for k, v in sorted(self.faults.items())),
            ("LOST (must be 0)", str(len(result.lost))),
            ("duplicates (extra deliveries run)", f"{result.duplicates} in "
             f"{result.duplicate_jobs} jobs, explained by {stats.get('lease_expired', 0)} "
             f"lease expiries + {stats.get('requeued', 0)} hand-backs"),
            ("stale acks refused", str(stats.get("stale_settle", 0))),
            ("orphans recovered (expired leases reaped)", str(stats.get("lease_expired", 0))),
            ("worker restarts", str(sum(w.starts - 1 for w in self.workers))),
            ("drained after faults healed", "yes" if drained else "NO"),
            ("latency p50 / p99 / max", f"{pct(0.5)} / {pct(0.99)} / "
             f"{latencies[-1] if latencies else '-'} ms"),
            ("latency mean", f"{statistics.fmean(latencies):.0f} ms" if latencies else "-"),
            ("checker", "ok" if result.ok else "VIOLATIONS"),
        ]
        width = max(len(k) for k, _ in rows)
        print(f"| {'what'.ljust(width)} | value |")
        print(f"|{'-' * (width + 2)}|-------|")
        for k, v in rows:
            print(f"| {k.ljust(width)} | {v} |")
        if not result.ok:
            print("\n" + result.describe())
        print(f"\n(work dir: {self.tmp})")
        return 0 if result.ok and drained and not result.lost else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=150.0, help="jobs per second, total")
    parser.add_argument("--drain-s", type=float, default=60.0)
    parser.add_argument("--faults", default="",
                        help="only these fault kinds, comma-separated (e.g. link_cut,link_flap)")
    parser.add_argument("--no-partitions", dest="partitions", action="store_false",
                        help="leave out the network-namespace partitions")
    args = parser.parse_args()
    soak = Soak(args)
    try:
        return anyio.run(soak.run)
    finally:
        for w in getattr(soak, "workers", []):
            w.kill()
        soak.server.close()
        soak.network.close()


if __name__ == "__main__":
    sys.exit(main())
