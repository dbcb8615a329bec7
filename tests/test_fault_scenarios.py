"""Fault scenarios on real processes, each checked by the history checker.

Workers are ``aioqueue worker tests.fault_app:app`` subprocesses on 1 s
leases (``tests.fault_app``); faults are injected with the TCP fault proxy
(:mod:`tests.harness.proxy`), signals to worker and server processes, and
server commands. After every scenario :func:`tests.harness.checker.check`
asserts the invariants over the workers' execution histories and the final
Redis state. Every wait polls observable state with a deadline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import aioqueue
from aioqueue.record import Field
from aioqueue.scripts import load_script
from aioqueue.server import ServerBinary, ServerProcess

from .harness.proxy import FaultProxy
from .harness.scenario import START_S, Scenario
from .helpers import wait_until

LEASE_S = 1.0
DRAIN_S = 30.0


def sha(name: str) -> str:
    # every server the suite starts is Redis >= 7 or Valkey: scripts carry flags
    return load_script(name, flags=True).sha


@pytest.fixture
def scenario(own_server: ServerProcess, tmp_path: Path) -> Scenario:
    """Enter it in the test (``async with scenario:``): the app's task group
    must be entered and left by one task."""
    return Scenario(own_server.url, tmp_path)


@pytest.fixture
async def proxy(own_server: ServerProcess) -> Any:
    async with FaultProxy.for_url(own_server.url) as p:
        yield p


async def test_claim_reply_lost_job_started_once(scenario: Scenario, proxy: FaultProxy) -> None:
    async with scenario:
        # Given a worker whose connections go through the fault proxy, and a trap
        # that drops the reply of the claim that hands out our job, then cuts
        # the connection
        worker = scenario.spawn(url=proxy.url)
        await scenario.wait_fetchers(1)
        trap = proxy.lose_reply(sha("claim"), reply_contains="j-claim")
        with anyio.fail_after(10):
            await trap.armed.wait()

        # When the job is enqueued (the claim executes; its reply is lost)
        await scenario.producer.get_task("rec").options(job_id="j-claim").enqueue(n=1)
        scenario.acked.append("j-claim")
        with anyio.fail_after(10):
            await trap.fired.wait()

        # Then the worker's repeated claim (same reservation id) gets the same job
        # and runs it once: one delivery, no lease expiry
        await scenario.wait_drained(DRAIN_S)
        runs = [r for r in scenario.runs() if r.kind == "start"]
        token = await scenario.client.hget(scenario.keys.job("j-claim"), Field.TOKEN)
        assert [(r.job_id, r.token, r.pid) for r in runs] == [("j-claim", token, worker.pid)]
        info = await scenario.producer.job("j-claim").info()
        assert info.status is aioqueue.JobStatus.SUCCEEDED
        assert info.deliveries == 1
        stats = await scenario.stats()
        assert "lease_expired" not in stats, stats
        assert "fetcher default: RedisUnavailable" in worker.output  # it saw the cut
        (await scenario.check()).assert_ok()


async def test_settle_reply_lost_one_completion(scenario: Scenario, proxy: FaultProxy) -> None:
    async with scenario:
        # Given a worker behind the proxy and a trap on the settle of our job
        worker = scenario.spawn(url=proxy.url)
        await scenario.wait_fetchers(1)
        trap = proxy.lose_reply(sha("settle"), "j-settle")

        # When the job runs and its settle executes but the reply is lost
        job = await scenario.producer.get_task("rec").options(job_id="j-settle").enqueue(n=7)
        scenario.acked.append(job.id)
        with anyio.fail_after(10):
            await trap.fired.wait()

        # Then the re-sent settle is recognised: one completion, nothing refused
        assert await job.result(timeout=10) == 7
        await scenario.wait_drained(DRAIN_S)
        stats = await scenario.stats()
        assert stats.get("succeeded") == 1
        assert "stale_settle" not in stats
        assert "lease_expired" not in stats
        assert (await job.info()).deliveries == 1
        assert len([r for r in scenario.runs() if r.kind == "start"]) == 1
        # the worker goes on
        await scenario.enqueue_recs(5)
        await scenario.wait_drained(DRAIN_S)
        assert worker.returncode is None
        (await scenario.check()).assert_ok()


async def test_client_kill_of_blocking_connection(scenario: Scenario) -> None:
    async with scenario:
        # Given a worker idle on its blocking connection
        worker = scenario.spawn()
        await scenario.wait_fetchers(1)
        for round_ in range(3):
            (fetcher,) = await scenario.fetchers()
            assert fetcher["name"].startswith("aioqueue:") and fetcher["name"].endswith(":default")

            # When that connection is killed by the server
            assert await scenario.client.execute_command("CLIENT", "KILL", "ID", fetcher["id"])

            # Then the fetcher reconnects (a new connection under the same name)
            async def reconnected(old: str = fetcher["id"]) -> bool:
                now = await scenario.fetchers()
                return len(now) == 1 and now[0]["id"] != old
            await wait_until(reconnected, 5, what="the fetcher to reconnect")
            # and jobs enqueued meanwhile run
            await scenario.enqueue_recs(10, start=round_ * 10)
        await scenario.wait_drained(DRAIN_S)
        assert worker.returncode is None
        report = await scenario.check()
        report.assert_ok()
        assert report.duplicates == 0


async def test_redis_paused_past_socket_timeouts_no_redelivery_storm(
    own_server: ServerProcess, tmp_path: Path
) -> None:
    # Given two workers (socket timeout 0.3 s, lease 1 s) running 12 jobs of 3 s
    env = {"AQ_SOCKET_TIMEOUT": "0.3"}
    async with Scenario(own_server.url, tmp_path, env=env) as sc:
        workers = [sc.spawn() for _ in range(2)]
        await sc.wait_fetchers(2)
        await sc.enqueue_recs(12, seconds=3.0)
        await wait_until(lambda: len(sc.runs()) >= 12, START_S, what="all 12 running")

        # When Redis is frozen for 1.5 s (past socket timeouts and the lease, not
        # past the lease clock's allowance of one more lease)
        own_server.pause()
        await anyio.sleep(1.5)
        own_server.resume()

        # Then live workers keep their jobs: no lease expires, nothing runs twice
        await sc.wait_drained(DRAIN_S)
        assert all(w.returncode is None for w in workers)
        report = await sc.check()
        stats = await sc.stats()
        report.assert_ok()  # no loss; every duplicate explained and refused
        # the reaper's stall guard holds reaping for a renewal interval after
        # the freeze, so the renewals land first: no storm
        assert report.duplicates == 0, (stats, report.describe())
        assert "lease_expired" not in stats, stats


async def test_script_flush_under_load(scenario: Scenario) -> None:
    async with scenario:
        # Given two workers and a stream of jobs
        workers = [scenario.spawn() for _ in range(2)]
        await scenario.wait_fetchers(2)

        async def flusher() -> None:
            for _ in range(10):
                await scenario.client.script_flush()
                await anyio.sleep(0.05)

        # When the script cache is flushed repeatedly while jobs are enqueued and run
        async with anyio.create_task_group() as tg:
            tg.start_soon(flusher)
            await scenario.enqueue_recs(300)

        # Then every job runs once and completes once
        await scenario.wait_drained(DRAIN_S)
        assert all(w.returncode is None for w in workers)
        report = await scenario.check()
        report.assert_ok()
        stats = await scenario.stats()
        assert stats.get("succeeded") == 300
        # a duplicate needs a lease to expire, which only CPU starvation of the
        # 2-core box can cause here; then it must be counted (checked above)
        assert report.duplicates <= stats.get("lease_expired", 0), stats


async def test_many_workers_racing_no_duplicates(own_server: ServerProcess,
                                                 tmp_path: Path) -> None:
    # Given four worker processes (3 s leases: no fault is injected) on one queue
    async with Scenario(own_server.url, tmp_path, env={"AQ_LEASE": "3"}) as sc:
        for _ in range(4):
            sc.spawn("--concurrency", "50")
        await sc.wait_fetchers(4, timeout=40)

        # When 20 jobs longer than a renewal interval and 1,000 short ones are enqueued
        await sc.enqueue_recs(20, seconds=1.0)
        rec = sc.producer.get_task("rec")
        jobs = await rec.enqueue_many([rec.bind(n=i) for i in range(1000)])
        sc.acked += [j.id for j in jobs]

        # Then each runs exactly once
        await sc.wait_drained(DRAIN_S * 2)
        report = await sc.check()
        report.assert_ok()
        assert report.starts == 1020
        assert report.duplicates == 0
        stats = await sc.stats()
        assert "lease_expired" not in stats and "stale_settle" not in stats
        pids = {r.pid for r in sc.runs()}
        assert len(pids) >= 2, "the work was not shared"


async def test_poison_job_dead_lettered_other_jobs_flow(
    own_server: ServerProcess, tmp_path: Path
) -> None:
    # Given a worker that is restarted whenever it dies, delivery limit 3
    env = {"AQ_MAX_DELIVERIES": "3"}
    async with Scenario(own_server.url, tmp_path, env=env) as sc:
        exits: list[int] = []

        async def keep_alive() -> None:
            while True:
                w = sc.spawn("--concurrency", "1")
                code = await w.wait_exit(120)
                exits.append(code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_alive)
            # When a job that kills its worker every time is enqueued with 30 good ones
            poison = await sc.producer.get_task("poison").enqueue()
            sc.acked.append(poison.id)
            await sc.enqueue_recs(30)

            # Then it is dead-lettered after 3 deliveries with the delivery-limit reason
            with pytest.raises(aioqueue.JobFailed) as failed:
                await poison.result(timeout=60)
            assert failed.value.error_type == "DeliveryLimitExceeded"
            # and the good jobs all complete
            await sc.wait_drained(DRAIN_S)
            tg.cancel_scope.cancel()
        info = await poison.info()
        assert info.deliveries == 3
        assert exits == [3, 3, 3]
        assert [r.job_id for r in sc.runs() if r.kind == "start"].count(poison.id) == 3
        assert await sc.producer.dead_letters(sc.queue) and \
            (await sc.counts())["dead"] == 1
        (await sc.check(workers_killed=True)).assert_ok()


async def test_event_loop_blocked_past_lease(scenario: Scenario) -> None:
    async with scenario:
        # Given two workers
        workers = [scenario.spawn() for _ in range(2)]
        await scenario.wait_fetchers(2)

        # When a task blocks its worker's event loop for 2.5 s (lease 1 s)
        job = await scenario.producer.get_task("block").enqueue(seconds=2.5)
        scenario.acked.append(job.id)

        # Then the job is re-delivered to the other worker and succeeds there
        result = await job.result(timeout=20)
        runs = sorted((r for r in scenario.runs() if r.kind == "start"),
                      key=lambda r: int(r.token))
        assert len(runs) == 2 and int(runs[0].token) < int(runs[1].token)
        assert result == runs[1].token  # the task returns its token
        assert runs[0].pid != runs[1].pid
        blocked = next(w for w in workers if w.pid == runs[0].pid)
        # and the blocked worker warns about loop lag; its late outcome is refused
        await wait_until(lambda: "event loop was blocked" in blocked.output, 10,
                         what="the loop-lag warning")
        await wait_until(lambda: _stat(scenario, "stale_settle"), 10, what="the stale settle")
        stats = await scenario.stats()
        assert stats.get("lease_expired") == 1 and stats.get("succeeded") == 1
        await scenario.wait_drained(DRAIN_S)
        (await scenario.check()).assert_ok()


async def _stat(sc: Scenario, name: str) -> int:
    return int((await sc.stats()).get(name, 0))


@pytest.fixture(params=["always", "everysec"])
def aof_server(request: pytest.FixtureRequest, server_binary: ServerBinary,
               tmp_path: Path) -> Any:
    server = ServerProcess(server_binary, directory=tmp_path / "redis", appendonly=True,
                           appendfsync=request.param)
    server.start()
    try:
        yield server
    finally:
        server.close()


async def test_redis_sigkill_restart_under_load(aof_server: ServerProcess,
                                                tmp_path: Path) -> None:
    # Given two workers and a producer enqueueing continuously (AOF on)
    async with Scenario(aof_server.url, tmp_path, env={"AQ_SOCKET_TIMEOUT": "1"}) as sc:
        workers = [sc.spawn() for _ in range(2)]
        await sc.wait_fetchers(2)

        async def killer() -> None:
            await wait_until(lambda: len(sc.acked) >= 150, 30, what="load")
            # When Redis is SIGKILLed and restarted on the same data, twice
            for _ in range(2):
                await anyio.to_thread.run_sync(aof_server.restart)
                await anyio.sleep(0.3)

        async with anyio.create_task_group() as tg:
            tg.start_soon(killer)
            await sc.enqueue_retrying(600, seconds=0.01)

        # Then every acknowledged job completes, duplicates are explained
        await sc.wait_drained(DRAIN_S * 2)
        assert all(w.returncode is None for w in workers)
        report = await sc.check()
        report.assert_ok()
        assert sc.producer.broker.scripts.reloads >= 1


async def test_maxmemory_noeviction(own_server: ServerProcess, tmp_path: Path) -> None:
    async with Scenario(own_server.url, tmp_path) as sc:
        client = sc.client
        # Given a worker holding 5 jobs of 2.5 s (longer than 2 leases)
        worker = sc.spawn()
        await sc.wait_fetchers(1)
        held = await sc.enqueue_recs(5, seconds=2.5)
        await wait_until(lambda: len(sc.runs()) >= 5, START_S, what="5 jobs running")

        # When the server's memory limit is reached (noeviction)
        used = int((await client.info("memory"))["used_memory"])
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", str(used + 256 * 1024))
        rec = sc.producer.get_task("rec")
        refused_id = None
        with pytest.raises(aioqueue.RedisOutOfMemory):
            for i in range(10_000):
                refused_id = f"oom{i}"
                await rec.options(job_id=refused_id).enqueue(n=i, seconds=0.0)
                sc.acked.append(refused_id)

        # Then the refused enqueue wrote nothing
        assert refused_id is not None
        assert not await client.exists(sc.keys.job(refused_id))
        # and the jobs held by the worker are still settled
        assert [await j.result(timeout=15) for j in held] == list(range(5))
        stats = await sc.stats()
        assert "lease_expired" not in stats, stats

        # When memory is freed the queue drains and enqueue works again
        await client.config_set("maxmemory", "0")
        await sc.enqueue_recs(3, start=50_000)
        await sc.wait_drained(DRAIN_S)
        assert worker.returncode is None
        (await sc.check()).assert_ok()
