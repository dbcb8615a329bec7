"""Bad data in Redis and bad start-up conditions: a typed error or a dead
letter with a specific reason; the worker keeps going and nothing is lost."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

import aioqueue
from aioqueue.errors import WrongKeyType
from aioqueue.server import ServerBinary, ServerProcess

from .conftest import running
from .helpers import WorkerProcess, wait_until

START_S = 15.0


async def plant(client: Any, keys: Any, job_id: str, fields: dict[str, Any]) -> None:
    """Write a job record by hand and make it runnable, as enqueue.lua would."""
    if fields:
        await client.hset(keys.job(job_id), mapping=fields)
    await client.rpush(keys.wait(0), job_id)
    await client.zadd(keys.prios, {"0": 0})
    await client.rpush(keys.wake, "1")


class Boom:
    """Unpickling this would run code: it must never be unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.touch, (self.path,))


def make_worker_app(make_app: Callable[..., aioqueue.App]) -> aioqueue.App:
    app = make_app()

    @app.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    return app


async def test_corrupt_records_are_dead_lettered_with_a_reason(
    make_app: Callable[..., aioqueue.App], tmp_path: Path
) -> None:
    app = make_worker_app(make_app)
    marker = tmp_path / "pwned"
    async with app:
        client = app.broker.client
        keys = app.broker.keys(app.default_queue)
        # Given records that cannot be run: malformed JSON, a pickle blob that
        # would run code, arguments of the wrong shape, an unknown task...
        await plant(client, keys, "bad-json", {"t": "add", "a": '{"args": [1, ', "st": "queued"})
        blob = pickle.dumps(Boom(marker), protocol=0).decode("latin-1")
        await plant(client, keys, "pickle", {"t": "add", "a": blob, "st": "queued"})
        await plant(client, keys, "wrong-args", {"t": "add", "a": '{"args": ["x", []]}',
                                                 "st": "queued"})
        await plant(client, keys, "no-task", {"t": "nope", "a": '{"args": []}', "st": "queued"})
        # ...and an id in the queue with no record at all
        await plant(client, keys, "ghost", {})
        good = [await app.get_task("add").enqueue(i, 1) for i in range(20)]

        # When a worker runs the queue
        async with running(app) as supervisor:
            # Then the good jobs succeed
            assert [await j.result(timeout=10) for j in good] == [i + 1 for i in range(20)]
            await wait_until(lambda: _dead_count(app) , 10, what="dead letters")
            await wait_until(lambda: supervisor.counters["failed"] >= 4, 10,
                             what="the four bad records to fail")

        # and each bad record is dead-lettered with a specific reason
        reasons = {}
        for job_id in ("bad-json", "pickle", "wrong-args", "no-task"):
            reasons[job_id] = await error_type(app, job_id)
        assert reasons == {"bad-json": "InvalidPayload", "pickle": "InvalidPayload",
                           "wrong-args": "InvalidPayload", "no-task": "TaskNotFound"}
        # the id without a record is counted and dropped
        stats = await app.broker.stats(app.default_queue)
        assert stats.get("missing_record") == 1
        assert not marker.exists(), "a stored pickle was unpickled"
        assert await app.broker.counts(app.default_queue) == {
            "waiting": 0, "running": 0, "scheduled": 0, "dead": 4}


async def error_type(app: aioqueue.App, job_id: str) -> str:
    """The dead letter's reason, read from the raw record (``Job.info`` parses
    the stored arguments, which these records do not have in a valid form)."""
    status, error = await app.broker.job_fields(app.default_queue, job_id, "st", "e")
    assert status == "failed", (job_id, status)
    assert error is not None
    return str(json.loads(error)["type"])


async def test_dead_letters_lists_a_malformed_record(
    make_app: Callable[..., aioqueue.App]
) -> None:
    app = make_worker_app(make_app)
    async with app:
        keys = app.broker.keys(app.default_queue)
        await plant(app.broker.client, keys, "bad-json", {"t": "add", "a": "{", "st": "queued"})
        async with running(app):
            await wait_until(lambda: _dead_count(app), 10, what="the dead letter")
        (info,) = await app.dead_letters(app.default_queue)
        assert info.id == "bad-json" and info.error is not None
        assert info.error["type"] == "InvalidPayload"


async def _dead_count(app: aioqueue.App) -> int:
    return (await app.broker.counts(app.default_queue))["dead"]


async def test_record_missing_fields(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_worker_app(make_app)
    async with app:
        client = app.broker.client
        keys = app.broker.keys(app.default_queue)
        # Given a record with a status but no task and no arguments
        await plant(client, keys, "bare", {"st": "queued"})
        good = await app.get_task("add").enqueue(2, 3)

        # When a worker runs the queue
        async with running(app):
            # Then the worker keeps going: the good job succeeds
            assert await good.result(timeout=10) == 5
            # and the bare record is dead-lettered, naming what is missing
            await wait_until(lambda: _dead_count(app), 10, what="the dead letter")
        assert await error_type(app, "bare") in ("TaskNotFound", "InvalidPayload")


async def test_binary_garbage_in_record(make_app: Callable[..., aioqueue.App],
                                        tmp_path: Path) -> None:
    app = make_worker_app(make_app)
    async with app:
        client = app.broker.client
        keys = app.broker.keys(app.default_queue)
        # Given a record whose arguments are a binary pickle (not UTF-8)
        raw = pickle.dumps(Boom(tmp_path / "pwned"), protocol=5)
        await client.hset(keys.job("binary"), mapping={"t": "add", "st": "queued"})
        await client.execute_command("HSET", keys.job("binary"), "a", raw)
        await plant(client, keys, "binary", {})
        good = await app.get_task("add").enqueue(1, 1)

        # When a worker runs the queue
        async with running(app):
            # Then the good job still succeeds and the binary one is dead-lettered
            assert await good.result(timeout=10) == 2
            await wait_until(lambda: _dead_count(app), 10, what="the dead letter")
        assert await error_type(app, "binary") == "InvalidPayload"
        assert not (tmp_path / "pwned").exists()


async def test_queue_key_of_wrong_type(make_app: Callable[..., aioqueue.App],
                                       caplog: pytest.LogCaptureFixture) -> None:
    app = make_worker_app(make_app)
    async with app:
        client = app.broker.client
        keys = app.broker.keys(app.default_queue)
        # Given a queue whose wait list key holds a string
        await client.set(keys.wait(0), "not a list")

        # When a job is enqueued
        # Then a typed error names the problem and nothing is half-written
        with pytest.raises(WrongKeyType) as refused:
            await app.get_task("add").options(job_id="j1").enqueue(1, 2)
        assert "wrong type" in str(refused.value)
        assert keys.base in str(refused.value)
        await client.delete(keys.job("j1"))  # see test_wrong_type_enqueue_writes_nothing

        # When the priority-levels key holds the wrong type (WRONGTYPE is a
        # permanent error: something else writes our keys), a worker stops
        # with one clear line naming the key, and the job stays queued
        await client.delete(keys.wait(0))
        job = await app.get_task("add").enqueue(1, 2)
        await client.delete(keys.prios)
        await client.set(keys.prios, "oops")
        caplog.set_level(logging.WARNING, "aioqueue")
        await worker_stops_naming(app, keys.base)
        assert await job.status() is aioqueue.JobStatus.QUEUED
        # Once the key is repaired, a new worker runs the job
        await client.delete(keys.prios)
        await client.zadd(keys.prios, {"0": 0})
        async with running(app):
            assert await job.result(timeout=10) == 3
        complaints = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(complaints) == 1, complaints
        assert "WrongKeyType" in complaints[0].getMessage() and not complaints[0].exc_info


async def worker_stops_naming(app: aioqueue.App, key: str) -> None:
    with anyio.fail_after(30), pytest.raises(aioqueue.WorkerStopped) as stopped:
        await aioqueue.Supervisor(app, concurrency=5).run()
    assert key in str(stopped.value)


async def test_wrong_type_leases_key_does_not_strand_jobs(
    make_app: Callable[..., aioqueue.App]
) -> None:
    app = make_worker_app(make_app)
    async with app:
        client = app.broker.client
        keys = app.broker.keys(app.default_queue)
        await client.set(keys.leases, "oops")
        job = await app.get_task("add").enqueue(1, 2)
        # the worker stops (WRONGTYPE is permanent), the job waits
        await worker_stops_naming(app, keys.base)
        assert await job.status() is aioqueue.JobStatus.QUEUED
        await client.delete(keys.leases)
        async with running(app):
            assert await job.result(timeout=10) == 3


async def test_wrong_type_enqueue_writes_nothing(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_worker_app(make_app)
    async with app:
        keys = app.broker.keys(app.default_queue)
        await app.broker.client.set(keys.wait(0), "not a list")
        with pytest.raises(WrongKeyType):
            await app.get_task("add").options(job_id="j1").enqueue(1, 2)
        assert not await app.broker.client.exists(keys.job("j1"))


# -- start-up problems ------------------------------------------------------


@pytest.fixture
def password_server(server_binary: ServerBinary, tmp_path: Path) -> Any:
    server = ServerProcess(server_binary, directory=tmp_path / "redis")
    server.start()
    with redis.Redis.from_url(server.url) as client:
        client.config_set("requirepass", "s3cret")
    try:
        yield server
    finally:
        server.close()


def cli_worker(url: str) -> WorkerProcess:
    return WorkerProcess("tests.fault_app:app", url)


async def _refused(url: str, *needles: str) -> str:
    worker = cli_worker(url)
    try:
        code = await worker.wait_exit(START_S)
        out = worker.output
        assert code == 1, out
        assert "Traceback" not in out, out
        for needle in needles:
            assert needle in out, out
        return out
    finally:
        worker.close()


async def test_wrong_address_exits_nonzero_naming_it() -> None:
    out = await _refused("redis://127.0.0.1:1/0", "RedisUnavailable", "127.0.0.1:1")
    assert "aioqueue: error:" in out


async def test_wrong_password_exits_nonzero_naming_it(password_server: ServerProcess) -> None:
    port = password_server.port
    await _refused(f"redis://:wrong@127.0.0.1:{port}/0", "RedisAuthError", "password")
    await _refused(f"redis://127.0.0.1:{port}/0", "RedisAuthError")
