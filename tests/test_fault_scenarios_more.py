"""More fault scenarios on real processes, each checked by the history checker.

Same style as :mod:`tests.test_fault_scenarios`: ``aioqueue worker
tests.fault_app:app`` subprocesses, the TCP :class:`FaultProxy`, signals to
server processes, and :func:`tests.harness.checker.check` after each scenario.
Waits poll observable state with a deadline; the only fixed sleeps are the
lengths of the injected faults themselves. Bounds carry at least a 2x margin
(the suite may share the box with a benchmark).

* a half-open connection (bytes vanish, no FIN/RST) longer than the socket
  timeout: the worker must not wedge;
* connections cut while a long job's lease is being renewed;
* ``maxclients`` reached: a new worker backs off with a typed error and works
  once the limit is raised; existing workers keep working;
* replica promotion: the documented loss of acknowledged but unreplicated
  enqueues, and ``App(wait_replicas=1)`` turning that silent loss into
  ``DurabilityUnconfirmed``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aredis

import aioqueue
from aioqueue.scripts import load_script
from aioqueue.server import ServerBinary, ServerProcess

from . import fault_app
from .harness.checker import Report, check, snapshot
from .harness.proxy import FaultProxy
from .harness.scenario import START_S, Scenario
from .helpers import wait_until

DRAIN_S = 30.0
RECOVER_S = 10.0  # recovery after a fault heals: ~1 s expected, generous for a loaded box


def sha(name: str) -> str:
    # every server the suite starts is Redis >= 7 or Valkey: scripts carry flags
    return load_script(name, flags=True).sha


@pytest.fixture
async def proxy(own_server: ServerProcess) -> Any:
    async with FaultProxy.for_url(own_server.url) as p:
        yield p


def _ids(jobs: list[aioqueue.Job[Any]]) -> set[str]:
    return {j.id for j in jobs}


# -- 1. half-open connection ------------------------------------------------------


async def test_half_open_connection_worker_does_not_wedge(
    own_server: ServerProcess, proxy: FaultProxy, tmp_path: Path
) -> None:
    # Given a worker whose every connection goes through the proxy, socket timeout 0.3 s
    async with Scenario(own_server.url, tmp_path, env={"AQ_SOCKET_TIMEOUT": "0.3"}) as sc:
        worker = sc.spawn(url=proxy.url)
        await sc.wait_fetchers(1)
        await sc.enqueue_recs(5)
        await sc.wait_drained(DRAIN_S)

        # When the connections go half-open (bytes vanish both ways, no FIN/RST)
        # for 1.5 s, five times the socket timeout, while jobs are enqueued
        # directly to the server
        mark = len(worker.output)
        proxy.set_mode("blackhole")
        began = time.monotonic()
        during = _ids(await sc.enqueue_recs(5, start=100))
        # the worker notices: its per-call deadlines (socket timeout, and
        # block_s + socket timeout for the idle BLPOP) expire
        await wait_until(lambda: "no reply from Redis within" in worker.output[mark:], 10,
                         what="the worker to time out on the half-open connection")
        await anyio.sleep(max(0.0, 1.5 - (time.monotonic() - began)))
        assert not [r for r in sc.runs() if r.job_id in during], "ran through a blackhole?"
        assert worker.returncode is None

        # Then, once bytes flow again, the jobs enqueued meanwhile complete
        # within a bound, and so do jobs enqueued afterwards
        proxy.set_mode("pass")
        healed = time.monotonic()
        await sc.wait_drained(RECOVER_S)
        recovered_s = time.monotonic() - healed
        after = await sc.enqueue_recs(5, start=200)
        await sc.wait_drained(RECOVER_S)
        assert {r.job_id for r in sc.runs() if r.kind == "end"} >= during | _ids(after)
        assert worker.returncode is None
        report = await sc.check()
        report.assert_ok()
        # nothing was leased while the connection was half-open: no re-delivery
        assert report.duplicates == 0, report.describe()
        assert recovered_s < RECOVER_S


async def test_half_open_result_listener_misses_no_completion(
    own_server: ServerProcess, proxy: FaultProxy, tmp_path: Path
) -> None:
    # Given a worker connected directly and a producer whose connections go
    # through the proxy, waiting on the result of a 2 s job
    async with Scenario(own_server.url, tmp_path) as sc:
        sc.spawn()
        await sc.wait_fetchers(1)
        producer = fault_app.build_app(proxy.url)
        async with producer:
            job = await producer.get_task("rec").enqueue(n=3, seconds=2.0)
            sc.acked.append(job.id)
            channel = producer.broker.keys(job.queue).done_channel(job.id)
            outcome: dict[str, Any] = {}

            async def wait_result() -> None:
                try:
                    outcome["result"] = await job.result(timeout=RECOVER_S)
                except aioqueue.ResultTimeout as exc:
                    outcome["result"] = exc

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_result)

                async def subscribed() -> bool:
                    return dict(await sc.client.pubsub_numsub(channel)).get(channel, 0) > 0
                await wait_until(subscribed, START_S, what="the producer to subscribe")
                await anyio.sleep(0.3)  # its record read follows the subscription at once
                assert not [r for r in sc.runs() if r.kind == "end"]

                # When its connections go half-open while the job ends (the
                # notification is published into the blackhole), then heal
                proxy.set_mode("blackhole")
                await wait_until(lambda: [r for r in sc.runs() if r.kind == "end"], START_S,
                                 what="the job to end")
                await wait_until(lambda: sc.client.hget(sc.keys.job(job.id), "st"), 10,
                                 what="the job to be settled")
                await anyio.sleep(0.5)  # the rest of the fault
                proxy.set_mode("pass")

            # Then the waiter learns the result (it ended during the outage)
            assert outcome["result"] == 3, outcome
        await sc.wait_drained(DRAIN_S)
        (await sc.check()).assert_ok()


# -- 2. connection cut during lease renewal ---------------------------------------


async def test_connection_cut_during_lease_renewal(
    own_server: ServerProcess, proxy: FaultProxy, tmp_path: Path
) -> None:
    # Given a worker behind the proxy (lease 1 s, renewed every 0.25 s) running a
    # job of 6 s, six leases long
    env = {"AQ_SOCKET_TIMEOUT": "0.3"}
    async with Scenario(own_server.url, tmp_path, env=env) as sc:
        worker = sc.spawn(url=proxy.url)
        await sc.wait_fetchers(1)
        (job,) = await sc.enqueue_recs(1, seconds=6.0)
        await wait_until(lambda: sc.runs(), START_S, what="the long job to start")

        # When, three times, a renewal executes but its reply is lost and its
        # connection reset, and then every connection is refused (RST) for 0.2 s
        cuts = 0
        for _ in range(3):
            if [r for r in sc.runs() if r.kind == "end"]:
                break
            trap = proxy.lose_reply(sha("renew"), job.id)
            with anyio.fail_after(5):
                await trap.fired.wait()
            proxy.set_mode("reset")
            await anyio.sleep(0.2)  # the length of the cut
            proxy.set_mode("pass")
            cuts += 1
        assert cuts >= 2, "the job ended before the renewals could be cut"

        # Then the job completes once: either with no re-delivery, or, if the
        # renewals were lost past the lease, the duplicate is explained by a
        # counted lease expiry and only one completion is accepted
        assert await job.result(timeout=DRAIN_S) == 0
        await sc.wait_drained(DRAIN_S)
        assert worker.returncode is None
        report = await sc.check()
        report.assert_ok()
        stats = await sc.stats()
        assert stats.get("succeeded") == 1, stats
        if report.duplicates == 0:
            assert (await job.info()).deliveries == 1
            assert "lease_expired" not in stats, stats
        else:
            assert stats.get("lease_expired", 0) >= report.duplicates, (stats, report.describe())


# -- 3. maxclients ----------------------------------------------------------------


async def _connection_attempts(admin: Any) -> int:
    """Connections the server accepted plus those it refused at maxclients
    (``total_connections_received`` does not count the refused ones)."""
    stats = await admin.info("stats")
    return int(stats["total_connections_received"]) + int(stats["rejected_connections"])


@contextlib.asynccontextmanager
async def _admin(url: str) -> AsyncIterator[Any]:
    """One connection, opened before any limit is set, kept for the whole test:
    it must be able to raise maxclients again."""
    client = aredis.Redis.from_url(url, decode_responses=True, single_connection_client=True)
    await client.ping()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.config_set("maxclients", "10000")
        await client.aclose()


MAX_ATTEMPTS_PER_S = 150.0
"""A worker backing off makes ~40 connection attempts a second here with the
fault app's 0.2 s reconnect cap (all roles together); a loop without backoff
makes thousands."""


async def test_maxclients_new_worker_backs_off_then_works(
    own_server: ServerProcess, tmp_path: Path
) -> None:
    async with _admin(own_server.url) as admin, Scenario(own_server.url, tmp_path) as sc:
        # Given a worker that ran jobs (its connections are open) and a producer
        # whose connections are open too
        old = sc.spawn()
        await sc.wait_fetchers(1)
        await sc.enqueue_recs(20, seconds=0.05)
        await sc.wait_drained(DRAIN_S)

        # When the server takes one more client only: a new worker can open the
        # connection it checks the server with, but not the others it needs
        clients = int((await admin.info("clients"))["connected_clients"])
        await admin.config_set("maxclients", str(clients + 1))
        before = await _connection_attempts(admin)
        began = time.monotonic()
        new = sc.spawn()

        # Then it gets a typed transient error (RedisUnavailable's message), stays
        # up and keeps retrying with backoff
        await wait_until(
            lambda: "cannot reach Redis: max number of clients reached" in new.output,
            START_S, what=f"the new worker to report max clients; output:\n{new.output}")
        # and the existing worker keeps working meanwhile
        busy = await sc.enqueue_recs(10, start=100)
        await sc.wait_drained(DRAIN_S)
        assert {r.pid for r in sc.runs() if r.job_id in _ids(busy)} == {old.pid}
        # measure its connection attempts over at least 3 s
        await anyio.sleep(max(0.0, 3.0 - (time.monotonic() - began)))
        attempts = await _connection_attempts(admin) - before
        window = time.monotonic() - began
        assert new.returncode is None, new.output[-3000:]
        assert 1 < attempts <= MAX_ATTEMPTS_PER_S * window, (attempts, window)

        # When the limit is raised again
        await admin.config_set("maxclients", "10000")

        # Then the new worker connects and runs jobs (the old one is stopped
        # first, so only the new one can run them)
        await sc.wait_fetchers(2)
        old.send(signal.SIGTERM)
        assert await old.wait_exit(15) == 0
        later = await sc.enqueue_recs(10, start=200)
        await sc.wait_drained(DRAIN_S)
        assert {r.pid for r in sc.runs() if r.job_id in _ids(later)} == {new.pid}
        report = await sc.check()
        report.assert_ok()
        assert report.duplicates == 0


async def test_maxclients_at_worker_start_exits_with_typed_error(
    own_server: ServerProcess, tmp_path: Path
) -> None:
    """With no connection to spare at all, the worker cannot pass its start-up
    check: like a wrong address (README, "Security") it exits 1 with a
    one-line typed error after the client's bounded retries, not in a loop."""
    async with _admin(own_server.url) as admin, Scenario(own_server.url, tmp_path) as sc:
        clients = int((await admin.info("clients"))["connected_clients"])
        await admin.config_set("maxclients", str(clients))
        before = await _connection_attempts(admin)
        worker = sc.spawn()
        assert await worker.wait_exit(START_S) == 1
        assert "RedisUnavailable" in worker.output
        assert "max number of clients reached" in worker.output
        attempts = await _connection_attempts(admin) - before
        assert 1 <= attempts <= 10, attempts  # one try and the client's 3 retries


# -- 4. replica promotion ---------------------------------------------------------


@dataclasses.dataclass
class Pair:
    primary: ServerProcess
    replica: ServerProcess
    link: FaultProxy
    """The replica's replication link to the primary goes through this proxy."""
    replica_client: Any


@contextlib.asynccontextmanager
async def replicated(binary: ServerBinary, tmp_path: Path) -> AsyncIterator[Pair]:
    primary = ServerProcess(binary, directory=tmp_path / "primary")
    primary.start()
    link = await FaultProxy.for_url(primary.url).start()
    replica = ServerProcess(binary, directory=tmp_path / "replica",
                            extra_args=["--replicaof", "127.0.0.1", str(link.port)])
    client = None
    try:
        await anyio.to_thread.run_sync(replica.start)
        client = aredis.Redis.from_url(replica.url, decode_responses=True)

        async def linked() -> bool:
            info = await client.info("replication")
            return info.get("master_link_status") == "up"
        await wait_until(linked, START_S, what="the replica to link")
        yield Pair(primary, replica, link, client)
    finally:
        if client is not None:
            await client.aclose()
        replica.close()
        await link.close()
        primary.close()


async def _fail_over(pair: Pair) -> None:
    """The primary dies; the replica resumes and is promoted."""
    await anyio.to_thread.run_sync(pair.primary.kill)
    pair.replica.resume()
    await pair.replica_client.execute_command("REPLICAOF", "NO", "ONE")

    async def promoted() -> bool:
        return (await pair.replica_client.info("replication")).get("role") == "master"
    await wait_until(promoted, 10, what="the replica to be promoted")


async def _replica_caught_up(pair: Pair, primary: Any) -> None:
    """Wait until the replica applied every write the primary made so far.

    Not ``WAIT``: it covers only the writes made on its own connection, and
    the enqueues went through the producer's other connections; on a loaded
    box it answered at once while their replication stream still sat unread
    in the link proxy, which the cut then dropped (the "kept" jobs were lost
    too: the test flaked)."""
    offset = int((await primary.info("replication"))["master_repl_offset"])

    async def applied() -> bool:
        info = await pair.replica_client.info("replication")
        return int(info.get("slave_repl_offset", -1)) >= offset
    await wait_until(applied, START_S, what=f"the replica to apply offset {offset}")


def _cut_off_replica(pair: Pair) -> None:
    """SIGSTOP the replica and drop its replication stream. SIGSTOP alone loses
    nothing on loopback: the stream waits in the stopped replica's socket
    buffer and is applied on SIGCONT, even after the primary died. Dropping
    the bytes in the link makes the loss that a failover across a real network
    partition causes."""
    pair.link.set_mode("blackhole")
    pair.replica.pause()


async def test_failover_loses_acked_unreplicated_enqueues(
    server_binary: ServerBinary, tmp_path: Path
) -> None:
    async with replicated(server_binary, tmp_path) as pair, \
            Scenario(pair.primary.url, tmp_path) as sc:
        # Given 5 jobs enqueued and replicated
        kept = _ids(await sc.enqueue_recs(5))
        await _replica_caught_up(pair, sc.client)

        # When the replica is cut off, 5 more are enqueued (the primary
        # acknowledges them), the primary dies and the replica is promoted
        _cut_off_replica(pair)
        unreplicated = _ids(await sc.enqueue_recs(5, start=5))
        for job_id in unreplicated:
            assert await sc.client.hget(sc.keys.job(job_id), "st") == "queued"
        await _fail_over(pair)

        # Then exactly those 5 acknowledged enqueues are lost: the documented
        # limit of asynchronous replication (README, "Guarantees")
        snap = await snapshot(pair.replica_client, sc.prefix, sc.queue)
        report = check(sc.acked, [], snap, drained=False)
        assert set(report.lost) == unreplicated, report.describe()
        dataclasses.replace(report, lost=[]).assert_ok()  # nothing else is wrong
        assert set(snap.records) == kept
        assert set(snap.waiting[0]) == kept  # the replicated ones are runnable


async def test_failover_with_wait_replicas_reports_unconfirmed(
    server_binary: ServerBinary, tmp_path: Path
) -> None:
    async with replicated(server_binary, tmp_path) as pair:
        durable = aioqueue.App(pair.primary.url, wait_replicas=1, wait_timeout_s=0.3)
        async with durable:
            keys = durable.broker.keys(durable.default_queue)

            async def enqueue(job_id: str, n: int) -> None:
                await durable.enqueue_with("rec", kwargs={"n": n}, job_id=job_id)

            # Given a durable producer whose enqueues the replica confirms
            await enqueue("confirmed", 0)
            acked = ["confirmed"]

            # When the replica is cut off, each enqueue raises
            # DurabilityUnconfirmed instead of claiming success (the job was
            # written on the primary: its outcome is unknown)
            _cut_off_replica(pair)
            unknown = [f"u{i}" for i in range(3)]
            for i, job_id in enumerate(unknown):
                began = time.monotonic()
                with pytest.raises(aioqueue.DurabilityUnconfirmed) as exc:
                    await enqueue(job_id, i)
                assert exc.value.job_ids == [job_id]
                assert time.monotonic() - began >= 0.25  # it waited for the replica
                assert await durable.broker.client.exists(keys.job(job_id))
            await _fail_over(pair)

        # Then after the failover the producer was told the truth: every
        # acknowledged enqueue survived, and the unconfirmed ones are the lost ones
        snap = await snapshot(pair.replica_client, "aioqueue", durable.default_queue)
        report: Report = check(acked, [], snap, unknown=unknown, drained=False)
        report.assert_ok()
        assert report.lost == [] and report.recovered == 0
        assert set(snap.records) == {"confirmed"}
