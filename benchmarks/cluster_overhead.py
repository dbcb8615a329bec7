"""Cost of Redis Cluster for one unsharded queue: enqueue and drain on a
single server vs on a local 3-primary cluster, same process, same run.

Usage: ``python -m benchmarks.cluster_overhead [--jobs 20000] [--rounds 3] [--replicas 1]``

Each round enqueues ``--jobs`` no-op jobs (``enqueue_many``) and drains them
with one in-process worker in burst mode, on the single server and then on
the cluster (rounds interleaved, so a slow patch of the machine hits both);
the best round of each set-up is reported. One queue lives in one slot, so
on the cluster all of its traffic goes to one primary: this measures the
routing layer, not scale-out. With ``--replicas 0`` the cluster has no
replicas, like the single server: on a 2-core machine the replicas' own work
(applying every write) competes for the same cores, which a real deployment
does not have.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio

import aioqueue
from aioqueue.server import ServerProcess, default_server_binary
from tests.harness.cluster import LocalCluster


async def one_round(url: str, jobs: int) -> tuple[float, float]:
    app = aioqueue.App(url, queue="bench")

    @app.task
    async def noop(n: int) -> None:
        return None

    async with app:
        started = time.perf_counter()
        for start in range(0, jobs, 1000):
            await noop.enqueue_many([noop.bind(n) for n in range(start, start + 1000)])
        enqueued = time.perf_counter()
        await aioqueue.Supervisor(app, concurrency=100, burst=True).run()
        drained = time.perf_counter()
    return jobs / (enqueued - started), jobs / (drained - enqueued)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1,
                        help="replicas per primary in the cluster (the single server has none)")
    args = parser.parse_args()
    binary = default_server_binary()
    rounds: list[tuple[tuple[float, float], tuple[float, float]]] = []
    with ServerProcess(binary) as server, tempfile.TemporaryDirectory() as tmp, \
            LocalCluster(binary, Path(tmp), replicas=args.replicas) as cluster:
        for _ in range(args.rounds):
            rounds.append((anyio.run(one_round, server.url, args.jobs),
                           anyio.run(one_round, cluster.url, args.jobs)))
    single = (max(r[0][0] for r in rounds), max(r[0][1] for r in rounds))
    clustered = (max(r[1][0] for r in rounds), max(r[1][1] for r in rounds))
    print(f"{binary.kind} {binary.version}, {args.jobs} jobs, best of {args.rounds}, "
          f"cluster 3 primaries x {args.replicas} replica(s)")
    for name, (single_rate, cluster_rate) in (("enqueue_many", (single[0], clustered[0])),
                                              ("drain", (single[1], clustered[1]))):
        print(f"{name:13s} single {single_rate:9,.0f}/s  cluster {cluster_rate:9,.0f}/s  "
              f"overhead {100 * (1 - cluster_rate / single_rate):5.1f}%")


if __name__ == "__main__":
    main()
