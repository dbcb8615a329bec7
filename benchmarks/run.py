"""Side-by-side benchmark orchestrator: aioqueue vs its peers, same run, same Redis build.

Runs in the bench venv (/work/venv). Each peer's driver (``benchmarks/peers/<peer>_bench.py``)
runs in that peer's own venv (``benchmarks/.venvs/<peer>``, made by ``setup_peers.py``); aioqueue
and the floor loop run in the bench venv. For every (peer, run) a fresh redis-server is started
on a free loopback port in a temp dir with no persistence, and FLUSHALL + CONFIG RESETSTAT
separate the phases. See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "peers"
VENVS = HERE / ".venvs"
RESULTS = HERE / "results"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

ALL_PEERS = ["aioqueue", "floor", "arq", "saq", "streaq", "taskiq", "rq", "bullmq"]
# asked for by name only: aioqueue at an earlier revision (``setup_peers --base-ref REF``);
# aioqueue with a rate limit configured but never hit (#13 item 6);
# aioqueue with heartbeats and metrics off / on, and with tracing on (#11)
OPTIONAL_PEERS = ["aioqueue_base", "aioqueue_limited", "aioqueue_ops_off", "aioqueue_ops_on",
                  "aioqueue_traced"]
# peers that run in the bench venv itself rather than in benchmarks/.venvs/<peer>
BENCH_VENV_PEERS = {"aioqueue", "aioqueue_limited", "aioqueue_ops_off", "aioqueue_ops_on",
                    "aioqueue_traced", "floor"}

COUNT, DONE, FIRST, LAST = "bench:count", "bench:done", "bench:first", "bench:last"


# --------------------------------------------------------------------------- redis servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    if port == 6379:  # never touch the default port
        return free_port()
    return port


class RedisServer:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="aioqueue-bench-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
             "--loglevel", "warning", "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        self.version = self.client.info("server")["redis_version"]

    def reset(self) -> None:
        self.client.flushall()
        self.client.config_resetstat()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- driver processes


def peer_python(peer: str) -> str:
    if peer in BENCH_VENV_PEERS:
        # this tree's own venv (setup_peers --only aioqueue) when made: only
        # its dependencies, like every other peer; else the bench venv
        own = VENVS / "aioqueue" / "bin" / "python"
        return str(own) if own.exists() else sys.executable
    return str(VENVS / peer / "bin" / "python")


def driver_cmd(peer: str, mode: str, url: str, *extra: str) -> list[str]:
    return [peer_python(peer), str(PEERS_DIR / f"{peer}_bench.py"), mode, "--url", url, *extra]


class DriverError(RuntimeError):
    pass


def run_driver(peer: str, mode: str, url: str, *extra: str, timeout: float = 300,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = driver_cmd(peer, mode, url, *extra)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **(env or {})}, cwd=PEERS_DIR)
    except subprocess.TimeoutExpired as exc:
        raise DriverError(f"{peer} {mode}: timed out after {timeout:.0f} s") from exc
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        tail = "\n".join(res.stderr.strip().splitlines()[-6:])
        raise DriverError(f"{peer} {mode}: exit {res.returncode}: {tail}")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return ""
    return proc.stdout.readline()


@dataclass
class Workers:
    peer: str
    url: str
    count: int
    concurrency: int
    expect: int
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)

    def start(self) -> None:
        env = {**os.environ, "BENCH_EXPECT": str(self.expect), "BENCH_URL": self.url}
        for _ in range(self.count):
            log = tempfile.TemporaryFile(mode="w+")
            self.logs.append(log)
            self.procs.append(subprocess.Popen(
                driver_cmd(self.peer, "worker", self.url, "--concurrency", str(self.concurrency)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                env=env, cwd=PEERS_DIR, start_new_session=True,
            ))
        for p in self.procs:
            line = _readline(p, 60)
            if '"ready"' not in line:
                self.kill()
                raise DriverError(f"{self.peer} worker never became ready: {self.stderr()}")
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stderr(self) -> str:
        out = []
        for log in self.logs:
            log.seek(0)
            out.extend(log.read().strip().splitlines()[-4:])
        return "\n".join(out)

    def stop(self) -> list[dict[str, Any]]:
        reports = []
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGUSR2)
        for p in self.procs:
            line = _readline(p, 15)
            with contextlib.suppress(Exception):
                reports.append(json.loads(line))
        self.kill()
        return reports

    def kill(self) -> None:
        # each worker is the leader of its own process group: also end what it forked
        # (rq's work horses and scheduler process would otherwise outlive it)
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            if p.stdout:
                p.stdout.close()
            if p.stdin:
                with contextlib.suppress(BrokenPipeError):
                    p.stdin.close()


# --------------------------------------------------------------------------- phases


def commands_total(server: RedisServer) -> int:
    stats = server.client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def drain(peer: str, server: RedisServer, n: int, workers: int, concurrency: int,
          batch_size: int) -> dict[str, Any]:
    server.reset()
    run_driver(peer, "fill", server.url, "--jobs", str(n), "--batch-size", str(batch_size))
    server.client.config_resetstat()
    w = Workers(peer, server.url, workers, concurrency, expect=n)
    w.start()
    polls = 0
    deadline = time.monotonic() + max(60.0, n / 25)
    ok = False
    exited = False
    try:
        while time.monotonic() < deadline:
            polls += 1
            if int(server.client.get(COUNT) or 0) >= n:
                ok = True
                break
            if not w.alive():
                exited = True
                break
            time.sleep(0.02)
        if ok:
            time.sleep(0.25)  # grace period: would a duplicate delivery show up?
        cmds = commands_total(server)
    finally:
        reports = w.stop()
    count = int(server.client.get(COUNT) or 0)
    distinct = int(server.client.scard(DONE))
    out: dict[str, Any] = {"ran": count, "distinct": distinct,
                           "ran_twice": count - distinct, "missing": n - distinct}
    if not ok:
        err = w.stderr()
        out["error"] = (f"drain with {workers} worker(s): {count}/{n} jobs ran before "
                        f"{'a worker exited' if exited else 'the timeout'}"
                        + (f" (worker stderr: {' | '.join(err.splitlines()[-3:])})" if err else ""))
        return out
    first = float(server.client.get(FIRST) or 0)
    last = float(server.client.get(LAST) or 0)
    if last > first:
        out["drain"] = (n - 1) / (last - first)
    if len(reports) == workers:
        out["cpu_us_per_job"] = sum(r["cpu_s"] for r in reports) / n * 1e6
    # queue-only commands: minus our polling GETs and the body's INCR+SADD per run and 2 SETs
    out["cmds_per_job"] = (cmds - polls - 2 * count - 2) / n
    return out


def online(peer: str, server: RedisServer, args: argparse.Namespace) -> dict[str, Any]:
    server.reset()
    w = Workers(peer, server.url, 1, args.concurrency, expect=0)
    w.start()
    try:
        out = run_driver(
            peer, "online", server.url, "--lat-jobs", str(args.lat_jobs), "--rate",
            str(args.rate), "--rt-jobs", str(args.rt_jobs), "--delay-jobs", str(args.delay_jobs),
            timeout=120 + args.lat_jobs / 20,
        )
        if out.get("error") and w.stderr():
            out["error"] += f" (worker stderr: {' | '.join(w.stderr().splitlines()[-3:])})"
    finally:
        w.stop()
    return out


def bench_peer(peer: str, run_no: int, args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"errors": []}
    server = RedisServer()
    res["redis_version"] = server.version
    try:
        def phase(name: str, fn: Any, *a: Any) -> None:
            t = time.monotonic()
            try:
                out = fn(*a)
            except DriverError as exc:
                res["errors"].append(f"{name}: {exc}")
                print(f"    {name}: FAILED {exc}", flush=True)
                return
            if isinstance(out, dict) and out.get("error"):
                res["errors"].append(f"{name}: {out['error']}")
            res[name] = out
            print(f"    {name} ({time.monotonic() - t:.1f}s): {fmt_short(out)}", flush=True)

        server.reset()
        phase("enqueue", run_driver, peer, "enqueue", server.url, "--jobs", str(args.jobs),
              "--batch-size", str(args.batch_size))
        for k in args.scaling:
            phase(f"drain{k}", drain, peer, server, args.jobs, k, args.concurrency,
                  args.batch_size)
        phase("online", online, peer, server, args)
    finally:
        server.stop()
    return res


def fmt_short(d: Any) -> str:
    if not isinstance(d, dict):
        return str(d)
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


# --------------------------------------------------------------------------- report

# (key, header, source phase, field, unit kind)
COLUMNS = [
    ("enq_seq", "enqueue, 1 await (jobs/s)", "enqueue", "enq_seq", "rate"),
    ("enq_conc", "enqueue, 100 concurrent (jobs/s)", "enqueue", "enq_conc", "rate"),
    ("enq_batch", "enqueue, batch API (jobs/s)", "enqueue", "enq_batch", "rate"),
    ("drain1", "drain, 1 worker x100 (jobs/s)", "drain1", "drain", "rate"),
    ("drain2", "drain, 2 workers (jobs/s)", "drain2", "drain", "rate"),
    ("drain4", "drain, 4 workers (jobs/s)", "drain4", "drain", "rate"),
    ("lat_p50", "e2e p50 @500/s (ms)", "online", "lat_p50_ms", "ms"),
    ("lat_p99", "e2e p99 @500/s (ms)", "online", "lat_p99_ms", "ms"),
    ("rt_p50", "enqueue->result p50 (ms)", "online", "rt_p50_ms", "ms"),
    ("delay_p50", "1 s delay lateness p50 (ms)", "online", "delay_p50_ms", "ms"),
    ("delay_p99", "1 s delay lateness p99 (ms)", "online", "delay_p99_ms", "ms"),
    ("bytes", "Redis bytes / queued job", "enqueue", "bytes_per_job", "int"),
    ("cpu", "worker CPU µs / job", "drain1", "cpu_us_per_job", "int"),
    ("cmds", "Redis cmds / job (queue only)", "drain1", "cmds_per_job", "float"),
]
TABLES = [
    ("Throughput", ["enq_seq", "enq_conc", "enq_batch", "drain1", "drain2", "drain4"]),
    ("Latency and cost", ["lat_p50", "lat_p99", "rt_p50", "delay_p50", "delay_p99", "bytes",
                          "cpu", "cmds"]),
]
# which driver feature flag a column depends on, and the notes key holding the reason
FEATURE = {"enq_conc": ("concurrent_enqueue", "conc"), "enq_batch": ("has_batch", "batch"),
           "rt_p50": ("has_result", "rt"), "delay_p50": ("has_delay", "delay"),
           "delay_p99": ("has_delay", "delay")}


def fmt_num(v: float, kind: str) -> str:
    if kind == "rate" or kind == "int":
        return f"{v:,.0f}"
    if kind == "ms":
        return f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:.2f}"


def summarize(results: dict[str, list[dict[str, Any]]], infos: dict[str, dict[str, Any]]
              ) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for peer, runs in results.items():
        row: dict[str, Any] = {}
        for key, _hdr, ph, fld, _kind in COLUMNS:
            vals = [r[ph][fld] for r in runs if isinstance(r.get(ph), dict)
                    and r[ph].get(fld) is not None]
            if vals:
                row[key] = {"median": statistics.median(vals), "min": min(vals),
                            "max": max(vals), "n": len(vals)}
        twice = [r[ph].get("ran_twice", 0) for r in runs for ph in r if ph.startswith("drain")
                 and isinstance(r[ph], dict)]
        missing = [r[ph].get("missing", 0) for r in runs for ph in r if ph.startswith("drain")
                   and isinstance(r[ph], dict)]
        row["ran_twice"] = sum(twice)
        row["missing"] = sum(missing)
        row["drains"] = len(twice)
        row["errors"] = [e for r in runs for e in r["errors"]]
        summary[peer] = row
    return summary


def render(summary: dict[str, dict[str, Any]], infos: dict[str, dict[str, Any]],
           versions: dict[str, str], meta: dict[str, Any]) -> str:
    footnotes: list[str] = []

    def note(text: str) -> str:
        if text not in footnotes:
            footnotes.append(text)
        return f"[^{footnotes.index(text) + 1}]"

    cols = {c[0]: c for c in COLUMNS}
    out = [f"# aioqueue side-by-side benchmark — {meta['when']}", "",
           f"Command: `{meta['command']}`  ",
           f"Jobs per phase: {meta['jobs']}; runs: {meta['runs']}; worker concurrency "
           f"{meta['concurrency']}; latency phase {meta['lat_jobs']} jobs at "
           f"{meta['rate']:.0f}/s offered; Redis {meta['redis']}; Python {meta['python']}; "
           f"{meta['cpus']} CPUs.  ",
           "Cells: median of runs, (min–max) when runs > 1. Higher is better for jobs/s, "
           "lower for everything else.", ""]
    for title, keys in TABLES:
        out.append(f"## {title}")
        out.append("")
        hdr = ["peer"] + [cols[k][1] for k in keys]
        if title == "Latency and cost":
            hdr.append("ran twice / missing")
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "---|" * len(hdr))
        for peer, row in summary.items():
            info = infos.get(peer, {})
            cells = [f"{peer} {versions.get(peer, '')}".strip()]
            for k in keys:
                kind = cols[k][4]
                if k in row:
                    s = row[k]
                    cell = fmt_num(s["median"], kind)
                    if s["n"] > 1 and s["min"] != s["max"]:
                        cell += f" ({fmt_num(s['min'], kind)}–{fmt_num(s['max'], kind)})"
                    if info.get("notes", {}).get(k):
                        cell += " " + note(f"{peer}: {info['notes'][k]}")
                    cells.append(cell)
                elif k in FEATURE and info and not info.get(FEATURE[k][0], True):
                    why = info.get("notes", {}).get(FEATURE[k][1], "not supported")
                    cells.append("n/a " + note(f"{peer}: {why}"))
                else:
                    cells.append("failed " + note(f"{peer}: see errors below") if row["errors"]
                                 else "—")
            if title == "Latency and cost":
                cells.append(f"{row['ran_twice']} / {row['missing']} (in {row['drains']} drains)")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    general = [(p, n) for p, i in infos.items() for k, n in i.get("notes", {}).items()
               if k == "general"]
    if general:
        out.append("Notes on settings:")
        out.append("")
        out.extend(f"- **{p}**: {n}" for p, n in general)
        out.append("")
    errs = [(p, e) for p, row in summary.items() for e in row["errors"]]
    if errs:
        out.append("Errors:")
        out.append("")
        out.extend(f"- **{p}**: {e}" for p, e in errs)
        out.append("")
    for i, text in enumerate(footnotes, 1):
        out.append(f"[^{i}]: {text}")
    return "\n".join(out) + "\n"


def chart(summary: dict[str, dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed in the bench venv; no chart", file=sys.stderr)
        return False
    peers = list(summary)
    panels = [
        ("Enqueue (jobs/s)", ["enq_seq", "enq_conc", "enq_batch"],
         ["1 await", "100 concurrent", "batch"], True),
        ("Drain, concurrency 100 per worker (jobs/s)", ["drain1", "drain2", "drain4"],
         ["1 worker", "2 workers", "4 workers"], False),
        ("Latency (ms, log scale)", ["lat_p50", "lat_p99", "rt_p50", "delay_p50"],
         ["e2e p50 @500/s", "e2e p99", "result round trip p50", "1 s delay lateness p50"], True),
        ("Cost per job", ["cpu", "bytes"], ["worker CPU µs", "Redis bytes queued"], False),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(15, 9))
    for ax, (title, keys, labels, log) in zip(axes.flat, panels, strict=True):
        width = 0.8 / len(keys)
        for j, (k, lab) in enumerate(zip(keys, labels, strict=True)):
            xs, ys, lo, hi = [], [], [], []
            for i, p in enumerate(peers):
                s = summary[p].get(k)
                if s and s["median"] > 0:
                    xs.append(i + (j - (len(keys) - 1) / 2) * width)
                    ys.append(s["median"])
                    lo.append(s["median"] - s["min"])
                    hi.append(s["max"] - s["median"])
            ax.bar(xs, ys, width, yerr=[lo, hi], label=lab, capsize=2)
        ax.set_xticks(range(len(peers)), peers, rotation=30)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("aioqueue vs peers — same machine, fresh redis-server per peer "
                 "(median of runs, whiskers = min–max)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def peer_versions(infos: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Version label per peer, as reported by the driver from inside its own venv."""
    vers: dict[str, str] = {}
    for p, info in infos.items():
        v = dict(info.get("versions", {}))
        label = [f"{v.pop(p)}"] if p in v else []
        redis_v = v.pop("redis", None)
        v.pop("hiredis", None)
        label += [f"{k} {x}" for k, x in v.items()]
        if redis_v:
            label.append(f"redis-py {redis_v}")
        vers[p] = label[0] + (f" ({', '.join(label[1:])})" if label[1:] else "") if label \
            else ""
    return vers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default=",".join(ALL_PEERS),
                    help=f"comma-separated subset of {','.join(ALL_PEERS + OPTIONAL_PEERS)}")
    ap.add_argument("--jobs", type=int, default=5000, help="jobs per enqueue/drain phase")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=100, help="per worker process")
    ap.add_argument("--scaling", default="1,2,4", help="worker process counts to drain with")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--lat-jobs", type=int, default=2500, help="jobs in the latency phase")
    ap.add_argument("--rate", type=float, default=500.0, help="offered rate, latency phase")
    ap.add_argument("--rt-jobs", type=int, default=100)
    ap.add_argument("--delay-jobs", type=int, default=100)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 run, 300 jobs, 250 latency jobs, 20 rt/delay jobs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    # byte-compile this tree (only what changed) as pip compiled every other
    # peer at install: with PYTHONDONTWRITEBYTECODE set (as on this machine) an
    # editable tree would be compiled again by every driver process
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "aioqueue")],
                   check=False, capture_output=True)
    if args.quick:
        args.runs, args.jobs, args.lat_jobs, args.rt_jobs, args.delay_jobs = 1, 300, 250, 20, 20
    args.scaling = [int(x) for x in args.scaling.split(",")]
    if 1 not in args.scaling:
        args.scaling.insert(0, 1)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]

    infos: dict[str, dict[str, Any]] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    for p in peers:
        if p not in ALL_PEERS + OPTIONAL_PEERS:
            ap.error(f"unknown peer {p}")
        if not Path(peer_python(p)).exists():
            skipped[p] = f"no venv at {VENVS / p}; run `python -m benchmarks.setup_peers`"
            continue
        try:
            infos[p] = run_driver(p, "info", "redis://unused", timeout=60)
        except DriverError as exc:
            skipped[p] = str(exc)
    t_start = time.monotonic()
    # interleave peers within each run so slow drift of the machine hits everyone alike
    redis_version = "?"
    for run_no in range(args.runs):
        for p in infos:
            print(f"[run {run_no + 1}/{args.runs}] {p}", flush=True)
            r = bench_peer(p, run_no, args)
            redis_version = r.get("redis_version", redis_version)
            results.setdefault(p, []).append(r)
    elapsed = time.monotonic() - t_start

    summary = summarize(results, infos)
    for p, why in skipped.items():
        summary[p] = {"errors": [f"skipped: {why}"], "ran_twice": 0, "missing": 0, "drains": 0}
    meta = {
        "when": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "jobs": args.jobs, "runs": args.runs, "concurrency": args.concurrency,
        "lat_jobs": args.lat_jobs, "rate": args.rate, "redis": redis_version,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "elapsed_s": round(elapsed, 1),
    }
    versions = peer_versions(infos)
    md = render(summary, infos, versions, meta)
    print()
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (args.out / f"bench-{stamp}.md").write_text(md)
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(
        {"meta": meta, "versions": versions, "infos": infos, "raw": results,
         "summary": summary}, indent=1, default=str))
    png = args.out / f"bench-{stamp}.png"
    if chart(summary, png):
        shutil.copyfile(png, args.out / "latest.png")
        print(f"chart: {png}")
    (args.out / "latest.md").write_text(md)
    print(f"results: {args.out}/bench-{stamp}.{{md,json}}  (total {elapsed:.0f} s)")
    return 0
