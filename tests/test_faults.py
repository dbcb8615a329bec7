"""Real-process faults: workers killed, terminated and frozen mid-job, Redis
restarted, servers that cannot run aioqueue, and CLI mistakes.

Workers are ``aioqueue worker tests.fault_app:app`` subprocesses on 1 s
leases. What ran where is read from the execution history that
``tests.fault_app.slow`` appends to a file, outside Redis; everything else is
read from Redis. Every wait polls observable state with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import aioqueue
from aioqueue.record import Field
from aioqueue.server import ServerProcess

from . import fault_app
from .conftest import running
from .helpers import History, WorkerProcess, is_leased, is_waiting, wait_until

TARGET = "tests.fault_app:app"
GRACE_S = 0.5  # the workers' shutdown grace period (AQ_GRACE)
LEASE_S = fault_app.settings().lease_s
START_S = 15.0  # bound on a worker subprocess starting up and claiming a job

Spawn = Callable[..., WorkerProcess]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start ``aioqueue worker tests.fault_app:app`` subprocesses; all are
    killed at teardown, whatever the test did to them."""
    procs: list[WorkerProcess] = []

    def start(url: str, *extra: str, env: dict[str, str] | None = None,
              target: str = TARGET) -> WorkerProcess:
        proc = WorkerProcess(target, url, *extra, env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()
        if os.environ.get("AQ_SHOW_OUTPUT"):  # debugging aid: -s to see worker logs
            print(f"--- worker {proc.pid} exited {proc.returncode}\n{proc.output}")


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "history.log")


def worker_pid(info: aioqueue.JobInfo) -> int:
    """The pid inside a worker id (``host:pid:suffix``)."""
    assert info.worker is not None
    return int(info.worker.split(":")[-2])


async def fetchers_at_least(client: Any, n: int) -> bool:
    """At least ``n`` fetchers are connected: each names its blocking connection."""
    clients = await client.client_list()
    return sum(1 for c in clients if c.get("name", "").startswith("aioqueue:")) >= n


async def test_sigkill_mid_job_is_redelivered_and_completed_once(
    own_server: ServerProcess, spawn: Spawn, history: History
) -> None:
    # Given two worker processes on one queue
    producer = fault_app.build_app(own_server.url)
    async with producer:
        broker = producer.broker
        keys = broker.keys(producer.default_queue)
        workers = [spawn(own_server.url, env=history.env) for _ in range(2)]
        await wait_until(lambda: fetchers_at_least(broker.client, 2), START_S,
                         what="both workers fetching")
        job = await producer.get_task("slow").enqueue(seconds=1.0, marker="k")
        (victim_pid,) = await wait_until(lambda: history.starts("k"), START_S,
                                         what="the job to start")
        victim, survivor = (workers if workers[0].pid == victim_pid else workers[::-1])
        assert victim.pid == victim_pid

        # When the worker running it is SIGKILLed mid-job
        victim.send(signal.SIGKILL)
        assert await victim.wait_exit(5) == -signal.SIGKILL
        # (nothing gave it back: it stays leased until the lease runs out)
        assert await is_leased(broker.client, keys, job.id)

        # Then the other worker runs it once the lease expires, and it succeeds once
        assert await job.result(timeout=LEASE_S + 10) == f"k:{survivor.pid}"
        assert history.starts("k") == [victim.pid, survivor.pid]
        assert history.ends("k") == [survivor.pid]
        info = await job.info()
        assert info.status is aioqueue.JobStatus.SUCCEEDED
        assert info.deliveries == 2
        assert worker_pid(info) == survivor.pid
        stats = await broker.stats(producer.default_queue)
        assert stats.get("succeeded") == 1
        assert stats.get("lease_expired") == 1
        assert "stale_settle" not in stats
        assert not await is_leased(broker.client, keys, job.id)


async def test_sigterm_hands_running_job_back_at_once_and_exits_zero(
    own_server: ServerProcess, spawn: Spawn, history: History
) -> None:
    # Given a worker with a 0.5 s grace period running a 3 s job
    env = {**history.env, "AQ_GRACE": str(GRACE_S)}
    producer = fault_app.build_app(own_server.url)
    async with producer:
        broker = producer.broker
        queue = producer.default_queue
        keys = broker.keys(queue)
        first = spawn(own_server.url, env=env)
        job = await producer.get_task("slow").enqueue(seconds=3.0, marker="t")
        await wait_until(lambda: history.starts("t"), START_S, what="the job to start")
        assert await is_leased(broker.client, keys, job.id)

        # When the worker gets SIGTERM
        sent = time.monotonic()
        first.send(signal.SIGTERM)

        # Then after the grace period, and well before a lease could expire
        # unrenewed, the job is back in its wait list and no longer leased
        await wait_until(lambda: is_waiting(broker.client, keys, job.id), GRACE_S + 1.0,
                         what="the job back in the wait list")
        elapsed = time.monotonic() - sent
        assert elapsed >= GRACE_S * 0.9, f"handed back after {elapsed:.2f}s, before the grace"
        assert not await is_leased(broker.client, keys, job.id)
        stats = await broker.stats(queue)
        assert stats.get("requeued") == 1  # the worker gave it back...
        assert "lease_expired" not in stats  # ...the reaper did not
        # and the worker exits cleanly without finishing the job
        assert await first.wait_exit(10) == 0, first.output
        assert history.ends("t") == []
        assert (await job.info()).deliveries == 1

        # When a second worker starts
        second = spawn(own_server.url, env=env)

        # Then it completes the job
        assert await job.result(timeout=START_S) == f"t:{second.pid}"
        assert history.starts("t") == [first.pid, second.pid]
        assert history.ends("t") == [second.pid]
        info = await job.info()
        assert info.deliveries == 2
        assert worker_pid(info) == second.pid
        assert (await broker.stats(queue)).get("succeeded") == 1


async def test_late_completion_after_lost_lease_is_refused(
    own_server: ServerProcess, spawn: Spawn, history: History
) -> None:
    # Given a worker running a 1 s job
    producer = fault_app.build_app(own_server.url)
    async with producer:
        broker = producer.broker
        queue = producer.default_queue
        first = spawn(own_server.url, env=history.env)
        job = await producer.get_task("slow").enqueue(seconds=1.0, marker="s")
        await wait_until(lambda: history.starts("s"), START_S, what="the job to start")

        # When that worker hangs (SIGSTOP) past its lease and another worker starts
        first.send(signal.SIGSTOP)
        second = spawn(own_server.url, env=history.env)

        # Then the job is re-delivered to the second worker, which completes it
        assert await job.result(timeout=LEASE_S + START_S) == f"s:{second.pid}"
        assert history.starts("s") == [first.pid, second.pid]
        assert history.ends("s") == [second.pid]

        # When the first worker resumes and finishes its (stale) run
        first.send(signal.SIGCONT)

        # Then its outcome is refused: the stored result stays the second worker's
        await wait_until(lambda: _stat(broker, queue, "stale_settle"), 10,
                         what="the late settle to be refused")
        assert history.ends("s") == [second.pid, first.pid]
        stats = await broker.stats(queue)
        assert stats.get("stale_settle") == 1
        assert stats.get("succeeded") == 1
        info = await job.info()
        assert info.status is aioqueue.JobStatus.SUCCEEDED
        assert info.deliveries == 2
        assert worker_pid(info) == second.pid
        (stored,) = await broker.job_fields(queue, job.id, "r")
        assert stored is not None and json.loads(stored) == f"s:{second.pid}"
        assert await job.result(timeout=1) == f"s:{second.pid}"
        # and the worker that lost the lease still shuts down cleanly
        first.send(signal.SIGTERM)
        assert await first.wait_exit(10) == 0, first.output


async def _stat(broker: Any, queue: str, name: str) -> int:
    return int((await broker.stats(queue)).get(name, 0))


async def test_redis_restart_between_jobs(
    own_server: ServerProcess, make_app: Callable[..., aioqueue.App]
) -> None:
    # Given an in-process worker that completed one job on an AOF-always server
    app = make_app(own_server.url)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    async with app, running(app) as supervisor:
        job1 = await double.enqueue(1)
        assert await job1.result(timeout=10) == 2
        client = app.broker.client
        enqueue_sha = app.broker.scripts.scripts["enqueue"].sha
        assert await client.script_exists(enqueue_sha) == [True]

        # When Redis is SIGKILLed and started again on the same port and directory
        await anyio.to_thread.run_sync(own_server.restart)

        # Then the data survived but the script cache did not
        assert await client.script_exists(enqueue_sha) == [False]
        assert await job1.status() is aioqueue.JobStatus.SUCCEEDED

        # When a second job is enqueued after the restart
        job2 = await double.enqueue(2)

        # Then the scripts are loaded again (NOSCRIPT) and the job completes
        assert await job2.result(timeout=10) == 4
        assert await client.script_exists(enqueue_sha) == [True]
        assert app.broker.scripts.reloads >= 1
        assert supervisor.counters["succeeded"] == 2


UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens: these fail before connecting


@pytest.mark.parametrize(("target", "message"), [
    ("no_such_module_aq:app", "cannot import module 'no_such_module_aq'"),
    ("json", "module 'json' holds 0 App objects; name one as MODULE:ATTRIBUTE"),
    ("json:dumps", "json:dumps is a function, not an aioqueue.App"),
    ("json:no_such_attribute", "module 'json' has no attribute 'no_such_attribute'"),
])
async def test_cli_refuses_a_target_that_is_not_an_app(
    target: str, message: str, spawn: Spawn
) -> None:
    # Given a MODULE:ATTR that does not name an App
    # When a worker is started with it
    worker = spawn(UNREACHABLE, target=target)

    # Then it exits with status 2 and a one-line error
    code = await worker.wait_exit(START_S)
    assert code == 2, worker.output
    assert f"aioqueue: error: {message}" in worker.output
    assert "Traceback" not in worker.output


async def test_burst_worker_drains_queue_and_exits(redis_url: str, spawn: Spawn) -> None:
    # Given 50 quick jobs waiting
    producer = fault_app.build_app(redis_url)
    async with producer:
        quick = producer.get_task("quick")
        jobs = await quick.enqueue_many([quick.bind(n) for n in range(50)])
        queue = producer.default_queue
        assert (await producer.broker.counts(queue))["waiting"] == 50

        # When a burst-mode worker starts
        worker = spawn(redis_url, "--burst")

        # Then it runs them all and exits 0 on its own
        assert await worker.wait_exit(START_S) == 0, worker.output
        assert [await j.result(timeout=1) for j in jobs] == [2 * n for n in range(50)]
        assert await producer.broker.counts(queue) == {
            "waiting": 0, "running": 0, "scheduled": 0, "dead": 0}
        assert (await producer.broker.stats(queue)).get("succeeded") == 50


async def test_lease_lost_job_redelivered_to_same_worker(
    redis_url: str, make_app: Callable[..., aioqueue.App]
) -> None:
    # Regression: with running jobs keyed by id alone, the first delivery's
    # clean-up crashed the supervisor (KeyError) once the second had ended.
    # Given the only worker, running a job whose first delivery outlives its lease
    app = make_app(redis_url)
    runs: list[int] = []

    @app.task
    async def stubborn(ctx: aioqueue.JobContext) -> int:
        run = len(runs) + 1
        runs.append(run)
        if run == 1:
            # the lease runs out while this delivery still runs (as when the loop
            # is blocked or the process frozen): expire it until it is re-delivered
            keys = app.broker.keys(app.default_queue)
            client = app.broker.client

            async def redelivered() -> bool:
                await client.zadd(keys.leases, {ctx.job_id: 0}, xx=True)
                return await client.hget(keys.job(ctx.job_id), Field.DELIVERIES) == "2"

            await wait_until(redelivered, 10, what="the re-delivery")
            # ...and this first run only ends after the second one succeeded
            await wait_until(lambda: _status_is(client, keys, ctx.job_id, "succeeded"), 10,
                             what="the second delivery to succeed")
        return run

    async with app, running(app) as supervisor:
        job = await stubborn.enqueue()

        # When the lease is lost and the same worker takes the job again
        # Then the second delivery's result stands
        assert await job.result(timeout=10) == 2
        # and the first delivery's late outcome is refused, without harm to the worker
        await wait_until(lambda: supervisor.counters["stale_settle"] == 1, 10,
                         what="the late outcome to be refused")
        assert (await job.info()).deliveries == 2
        assert runs == [1, 2]
        assert await (await stubborn.enqueue()).result(timeout=10) == 3


async def _status_is(client: Any, keys: Any, job_id: str, status: str) -> bool:
    return bool(await client.hget(keys.job(job_id), "st") == status)
