"""A slow, lossy network between a worker (and a producer) and Redis.

This kernel has no ``netem`` qdisc, so the degradation goes through the TCP
fault proxy (:meth:`tests.harness.proxy.FaultProxy.degrade`): a fixed delay
each way, and packet loss as TCP turns it into what a client sees, a chunk
held for a retransmission timeout of 200 ms - 1 s (everything behind it on
that connection waits). Each scenario is judged by the history checker.

The rule the tests pin down: a renewal reaches Redis one renewal interval
plus one round trip after the previous one, so leases are kept as long as
``renew_interval_s + worst round trip < lease_s``. Past that, leases expire
between renewals: the job is re-delivered, the late run is stopped by its
next renewal (its completion would be refused), the worker warns, and a job
that never gets through is dead-lettered at its delivery limit.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import aioqueue
from aioqueue.server import ServerProcess

from . import fault_app
from .conftest import BINARIES
from .harness.proxy import FaultProxy
from .harness.scenario import Scenario
from .helpers import wait_until

DRAIN_S = 30.0


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """One server of the first kind found: the network is degraded between
    client and server, whatever the server (no run per server kind)."""
    with ServerProcess(BINARIES[0], directory=tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def proxy(own_server: ServerProcess) -> AsyncIterator[FaultProxy]:
    async with FaultProxy.for_url(own_server.url) as p:
        yield p


class Producer:
    """A producer app whose connections go to ``url``; acknowledged ids go
    to the scenario's ``acked``."""

    def __init__(self, sc: Scenario, url: str) -> None:
        self.sc = sc
        self.app = fault_app.build_app(url, prefix=sc.prefix, queue=sc.queue)

    async def enqueue(self, specs: list[tuple[int, float]]) -> list[aioqueue.Job[Any]]:
        """``rec`` jobs ``(n, seconds)``, enqueued concurrently."""
        jobs: dict[int, aioqueue.Job[Any]] = {}

        async def one(n: int, seconds: float) -> None:
            jobs[n] = await self.app.get_task("rec").enqueue(n=n, seconds=seconds)
            self.sc.acked.append(jobs[n].id)

        async with anyio.create_task_group() as tg:
            for n, seconds in specs:
                tg.start_soon(one, n, seconds)
        return [jobs[n] for n, _ in specs]


async def warm_up(sc: Scenario, producer: Producer, lease_s: float) -> None:
    """One batch on the clean link first (one job long enough to have its
    lease renewed): the worker's and the producer's connections are open and
    the scripts loaded (a new connection costs three more round trips, a
    script's first call two), as in a worker that has been running when the
    network degrades."""
    await producer.enqueue([(1000 + n, 0.3 * lease_s if n == 0 else 0.0) for n in range(20)])
    await sc.wait_drained(DRAIN_S)


async def reap_forever(sc: Scenario, max_deliveries: int) -> None:
    """Reap the scenario's queue every 50 ms over a good connection, as
    another, well-connected worker's reaper would."""
    while True:
        await sc.producer.broker.reap(sc.queue, limit=100, max_deliveries=max_deliveries,
                                      dead_letter_ttl_ms=3_600_000)
        await anyio.sleep(0.05)


async def round_trip_s(url: str) -> float:
    app = fault_app.build_app(url)
    async with app:
        await app.broker.client.ping()  # connect first
        began = time.monotonic()
        await app.broker.client.ping()
        return time.monotonic() - began


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("latency_s", "loss", "lease_s"), [
    pytest.param(0.2, 0.0, 3.0, id="200ms-delay"),
    pytest.param(0.0, 0.3, 4.0, id="30pct-loss"),
    pytest.param(0.2, 0.3, 6.0, id="30pct-loss-and-200ms-delay"),
])
async def test_degraded_link_completes_every_job_once_and_keeps_leases(
        own_server: ServerProcess, proxy: FaultProxy, tmp_path: Path,
        latency_s: float, loss: float, lease_s: float) -> None:
    # Given a worker and a producer both behind a link that degrades while
    # they run; the lease (renewed every quarter lease) outlasts a renewal
    # interval plus the worst round trip, 2 x (latency + 1 s RTO), so no
    # lease may expire
    worst_round_trip_s = 2 * (latency_s + (1.0 if loss else 0.0))
    assert lease_s / 4 + worst_round_trip_s < lease_s
    async with Scenario(own_server.url, tmp_path, env={"AQ_LEASE": str(lease_s)}) as sc:
        worker = sc.spawn(url=proxy.url)
        await sc.wait_fetchers(1)
        producer = Producer(sc, proxy.url)
        async with producer.app:
            await warm_up(sc, producer, lease_s)
            proxy.degrade(latency_s, loss, seed=7)
            if not loss:
                assert await round_trip_s(proxy.url) >= 2 * latency_s

            # When the producer enqueues 36 quick jobs and 4 that run 1.25 leases
            specs = [(n, 1.25 * lease_s if n % 10 == 0 else 0.0) for n in range(40)]
            jobs = await producer.enqueue(specs)

            # Then every job completes, each delivered once: the long ones outlived
            # their first lease only because renewals kept landing through the link
            await sc.wait_drained(DRAIN_S)
            assert worker.returncode is None
            proxy.degrade()  # healed: the worker's shutdown need not crawl
            report = await sc.check()
            report.assert_ok()
            stats = await sc.stats()
            assert report.jobs == 60 and report.duplicates == 0, (report.describe(), stats)
            assert stats.get("succeeded") == 60 and "lease_expired" not in stats, stats
            for job in jobs[::10]:
                assert (await job.info()).deliveries == 1


@pytest.mark.timeout(60)
async def test_round_trip_longer_than_the_renewal_allowance_redelivers_and_dead_letters(
        own_server: ServerProcess, proxy: FaultProxy, tmp_path: Path) -> None:
    # Given a worker behind a link that slows to 0.6 s each way (a 1.2 s round
    # trip), with a 2 s lease renewed every 1 s: renewals then reach Redis
    # 2.2 s apart, longer than the lease; a second, well-connected reaper (this
    # test) runs too, as another worker's would
    env = {"AQ_LEASE": "2.0", "AQ_RENEW": "1.0", "AQ_MAX_DELIVERIES": "2"}
    async with Scenario(own_server.url, tmp_path, env=env) as sc:
        worker = sc.spawn(url=proxy.url)
        await sc.wait_fetchers(1)
        await sc.enqueue_recs(5)
        await sc.wait_drained(DRAIN_S)
        proxy.degrade(0.6)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reap_forever, sc, 2)
            # When a job of 6 s (three leases) runs there
            (slow,) = await sc.enqueue_recs(1, seconds=6.0, start=10)

            # Then its lease expires between two renewals, every delivery: the
            # job is re-delivered, each run is stopped by its next renewal
            # (none finishes), and at the delivery limit it is dead-lettered
            with pytest.raises(aioqueue.JobFailed) as failed:
                await slow.result(timeout=DRAIN_S)
            assert failed.value.error_type == "DeliveryLimitExceeded"

            tg.cancel_scope.cancel()

        # the worker said why, in one line
        await wait_until(lambda: "lease renewal took" in worker.output, 5,
                         what="the slow-renewal warning")
        assert "expires between two renewals" in worker.output
        runs = [r for r in sc.runs() if r.job_id == slow.id]
        assert len({r.token for r in runs if r.kind == "start"}) == 2
        assert not [r for r in runs if r.kind == "end"], runs
        assert (await slow.info()).deliveries == 2
        proxy.degrade()
        report = await sc.check()
        report.assert_ok()  # each extra delivery is explained by a counted lease expiry
        assert report.duplicates >= 1, report.describe()


@pytest.mark.timeout(60)
async def test_a_job_claimed_while_a_renewal_is_on_its_way_keeps_its_lease(
        own_server: ServerProcess, proxy: FaultProxy, tmp_path: Path) -> None:
    # Given a worker behind a link of 0.7 s each way (a 1.4 s round trip) with a
    # 3 s lease renewed every 0.75 s: renewal interval + round trip = 2.15 s < 3 s,
    # so by the rule above no lease may expire, whenever a job is claimed
    env = {"AQ_LEASE": "3.0", "AQ_RENEW": "0.75"}
    async with Scenario(own_server.url, tmp_path, env=env) as sc:
        worker = sc.spawn(url=proxy.url)
        await sc.wait_fetchers(1)
        await sc.enqueue_recs(3)
        await sc.enqueue_recs(1, seconds=1.0, start=3)  # renewed once: connections open
        await sc.wait_drained(DRAIN_S)
        proxy.degrade(0.7)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reap_forever, sc, 5)
            # When jobs longer than the lease arrive one by one, each at another
            # moment of the renewer's cycle (some while a renewal is on its way)
            for n in range(8):
                await sc.enqueue_recs(1, seconds=3.5, start=10 + n)
                await anyio.sleep(0.3)

            # Then each is delivered once: no lease expired
            await sc.wait_drained(DRAIN_S)
            tg.cancel_scope.cancel()
        assert worker.returncode is None
        proxy.degrade()
        stats = await sc.stats()
        report = await sc.check()
        report.assert_ok()
        assert report.duplicates == 0 and "lease_expired" not in stats, (
            report.describe(), stats)
