"""Delays, priorities, idempotent ids, retries, timeouts, dead letters, shutdown."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import pytest

import aioqueue
from aioqueue.broker import Settlement

from .conftest import running


async def _server_ms(app: aioqueue.App) -> int:
    sec, usec = await app.broker.client.time()
    return int(sec) * 1000 + int(usec) // 1000


async def test_same_job_id_twice_is_one_job(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    runs: list[int] = []

    @app.task
    async def record(n: int) -> int:
        runs.append(n)
        return n

    async with app:
        first = await record.options(job_id="order-42").enqueue(1)
        second = await record.options(job_id="order-42").enqueue(2)
        assert first.id == second.id == "order-42"
        assert (await app.broker.counts(app.default_queue))["waiting"] == 1
        async with running(app):
            assert await second.result(timeout=10) == 1
    assert runs == [1]


async def test_delayed_job_runs_on_time(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    started_ms: list[int] = []

    @app.task
    async def stamp() -> None:
        started_ms.append(await _server_ms(app))

    async with app, running(app):
        # Given an idle worker, when a job is enqueued with a 0.5 s delay
        before = await _server_ms(app)
        job = await stamp.options(delay=0.5).enqueue()
        assert await job.status() is aioqueue.JobStatus.SCHEDULED
        await job.result(timeout=10)
        info = await job.info()
        # Then it starts not before its due time and within 100 ms after it
        due = info.enqueued_ms + 500  # type: ignore[operator]
        assert info.enqueued_ms is not None and info.enqueued_ms >= before
        assert started_ms[0] >= due
        assert started_ms[0] - due <= 100, f"{started_ms[0] - due} ms late"


async def test_at_in_the_past_runs_now(make_app: Callable[..., aioqueue.App]) -> None:
    import datetime as dt

    app = make_app()

    @app.task
    async def hello() -> str:
        return "hi"

    async with app, running(app):
        job = await hello.options(at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).enqueue()
        assert await job.result(timeout=10) == "hi"


async def test_priorities_run_higher_first_fifo_within_level(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    order: list[str] = []

    @app.task
    async def visit(label: str) -> None:
        order.append(label)

    async with app:
        for label, prio in [("low1", -5), ("mid1", 0), ("high1", 9), ("mid2", 0),
                            ("high2", 9), ("low2", -5)]:
            await visit.options(priority=prio).enqueue(label)
        with anyio.fail_after(10):
            await aioqueue.Supervisor(app, concurrency=1, burst=True).run()
    assert order == ["high1", "high2", "mid1", "mid2", "low1", "low2"]


async def test_retry_with_backoff_then_dead_letter(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app(retry=aioqueue.RetryPolicy(backoff_s=0.1, factor=2, jitter=False))
    attempts: list[float] = []

    @app.task(max_tries=3)
    async def flaky() -> None:
        attempts.append(time.monotonic())
        raise RuntimeError(f"boom {len(attempts)}")

    async with app, running(app):
        job = await flaky.enqueue()
        with pytest.raises(aioqueue.JobFailed) as failed:
            await job.result(timeout=10)
        err = failed.value
        assert err.error_type == "RuntimeError"
        assert err.error_message == "boom 3"
        assert "RuntimeError: boom 3" in err.traceback
        assert err.attempts == 3
        assert await job.status() is aioqueue.JobStatus.FAILED
        keys = app.broker.keys(app.default_queue)
        assert await app.broker.client.zscore(keys.dead, job.id) is not None
    assert len(attempts) == 3
    # backoff 0.1 s then 0.2 s (no jitter)
    assert attempts[1] - attempts[0] >= 0.1
    assert attempts[2] - attempts[1] >= 0.2


async def test_retry_then_success(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    calls: list[int] = []

    @app.task(max_tries=5)
    async def eventually(n: int) -> int:
        calls.append(n)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return n * 2

    async with app, running(app):
        job = await eventually.enqueue(21)
        assert await job.result(timeout=10) == 42
        assert (await job.info()).attempt == 3


async def test_non_retryable_exception_fails_at_once(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    calls: list[int] = []

    @app.task(max_tries=5, retry_on=(ConnectionError,))
    async def broken() -> None:
        calls.append(1)
        raise ValueError("bad input")

    async with app, running(app):
        with pytest.raises(aioqueue.JobFailed) as failed:
            await (await broken.enqueue()).result(timeout=10)
        assert failed.value.error_type == "ValueError"
    assert calls == [1]


async def test_retry_exception_uses_its_delay(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    seen: list[float] = []

    @app.task(max_tries=2)
    async def later() -> str:
        seen.append(time.monotonic())
        if len(seen) == 1:
            raise aioqueue.Retry(delay=0.3)
        return "done"

    async with app, running(app):
        assert await (await later.enqueue()).result(timeout=10) == "done"
    assert seen[1] - seen[0] >= 0.3


async def test_timeout_counts_as_failure(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    finished: list[bool] = []

    @app.task(timeout=0.2)
    async def sleepy() -> None:
        try:
            await anyio.sleep(5)
        finally:
            finished.append(True)

    async with app, running(app):
        start = time.monotonic()
        with pytest.raises(aioqueue.JobFailed) as failed:
            await (await sleepy.enqueue()).result(timeout=10)
        assert failed.value.error_type == "TimeoutError"
        assert time.monotonic() - start < 3
    assert finished == [True]  # the coroutine's finally ran


async def test_per_call_timeout_overrides_task(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task(timeout=5)
    async def sleepy(seconds: float) -> float:
        await anyio.sleep(seconds)
        return seconds

    async with app, running(app):
        with pytest.raises(aioqueue.JobFailed):
            await (await sleepy.options(timeout=0.1).enqueue(1.0)).result(timeout=10)
        assert await (await sleepy.enqueue(0.01)).result(timeout=10) == 0.01


async def test_stale_settle_is_refused_and_counted(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task
    async def noop() -> int:
        return 1

    async with app:
        broker = app.broker
        q = app.default_queue
        job = await noop.enqueue()
        # Given worker A claimed the job with a short lease that then expired
        async with broker.blocking_client("a") as conn:
            (claimed_a,), _ = await broker.claim(conn, q, 10, 50, "worker-a")
            await anyio.sleep(0.1)
            assert await broker.reap(q, limit=10, max_deliveries=5,
                                     dead_letter_ttl_ms=60_000) == (1, 0)
            # and worker B got it next
            (claimed_b,), _ = await broker.claim(conn, q, 10, 10_000, "worker-b")
        assert claimed_b.token != claimed_a.token
        ttl = dict(default_result_ttl_ms=60_000, dead_letter_ttl_ms=60_000)
        # When A's late completion arrives, it is refused and counted
        assert await broker.settle(q, [Settlement(job.id, claimed_a.token, "ok", "111")],
                                   **ttl) == [-1]
        assert (await broker.stats(q))["stale_settle"] == 1
        # B's completion is accepted; sending it again (lost reply) is a no-op
        assert await broker.settle(q, [Settlement(job.id, claimed_b.token, "ok", "2")],
                                   **ttl) == [1]
        assert await broker.settle(q, [Settlement(job.id, claimed_b.token, "ok", "3")],
                                   **ttl) == [0]
        assert await job.result(timeout=1) == 2
        assert (await broker.stats(q))["succeeded"] == 1


async def test_expired_lease_is_redelivered_then_dead_at_delivery_limit(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task(max_deliveries=2)
    async def noop() -> None:
        return None

    async with app:
        broker, q = app.broker, app.default_queue
        job = await noop.enqueue()
        async with broker.blocking_client("a") as conn:
            for expected in [(1, 0), (0, 1)]:
                (claimed,), _ = await broker.claim(conn, q, 10, 20, "crashy")
                await anyio.sleep(0.05)
                assert await broker.reap(q, limit=10, max_deliveries=5,
                                         dead_letter_ttl_ms=60_000) == expected
        with pytest.raises(aioqueue.JobFailed) as failed:
            await job.result(timeout=1)
        assert failed.value.error_type == "DeliveryLimitExceeded"


async def test_lease_renewal_keeps_long_job_from_redelivery(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    runs: list[int] = []

    @app.task
    async def long_job() -> str:
        runs.append(1)
        await anyio.sleep(2.5)  # 2.5 leases
        return "ok"

    async with app, running(app) as sup1, running(app) as sup2:
        assert await (await long_job.enqueue()).result(timeout=10) == "ok"
        assert sup1.counters["lost_leases"] + sup2.counters["lost_leases"] == 0
    assert runs == [1]


async def test_shutdown_hands_running_job_back_at_once(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app(worker=aioqueue.WorkerSettings(
        lease_s=30, shutdown_grace_s=0.2, block_s=0.2, reaper_interval_s=0.05))
    started = anyio.Event()
    cancelled: list[bool] = []

    @app.task
    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep(60)
        except BaseException:
            cancelled.append(True)
            raise

    async with app:
        job = await forever.enqueue()
        sup = aioqueue.Supervisor(app, concurrency=5)
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            await started.wait()
            t0 = time.monotonic()
            sup.request_shutdown()
        # the supervisor stopped within the grace period (+ margin), not the lease
        assert time.monotonic() - t0 < 2
        assert cancelled == [True]
        assert await job.status() is aioqueue.JobStatus.QUEUED
        keys = app.broker.keys(app.default_queue)
        assert await app.broker.client.zscore(keys.leases, job.id) is None
        assert sup.counters["requeued"] == 1


async def test_burst_mode_exits_when_queue_empty(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    done: list[int] = []

    @app.task
    async def work(n: int) -> None:
        done.append(n)

    async with app:
        await work.enqueue_many([work.bind(i) for i in range(30)])
        # a job due far beyond the burst horizon does not keep the worker alive
        await work.options(delay=3600).enqueue(-1)
        sup = aioqueue.Supervisor(app, concurrency=10, burst=True)
        with anyio.fail_after(10):
            await sup.run()
    assert sorted(done) == list(range(30))


async def test_job_status_unknown_and_not_found(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    async with app:
        job = app.job("never-enqueued")
        assert await job.status() is aioqueue.JobStatus.UNKNOWN
        with pytest.raises(aioqueue.JobNotFound):
            await job.result(timeout=1)
        with pytest.raises(aioqueue.JobNotFound):
            await job.info()


async def test_result_timeout(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()

    @app.task
    async def noop() -> None:
        return None

    async with app:
        job = await noop.enqueue()  # no worker running
        with pytest.raises(aioqueue.ResultTimeout):
            await job.result(timeout=0.2)
        assert await job.status() is aioqueue.JobStatus.QUEUED


async def test_enqueue_many_with_options(make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app()
    order: list[int] = []

    @app.task
    async def visit(n: int) -> int:
        order.append(n)
        return n

    async with app:
        low = await visit.options(priority=-1).enqueue_many([visit.bind(i) for i in range(3)])
        high = await visit.options(priority=5).enqueue_many([visit.bind(i) for i in (10, 11)])
        later = await visit.options(delay=0.3).enqueue_many([visit.bind(99)])
        assert await later[0].status() is aioqueue.JobStatus.SCHEDULED
        assert (await app.broker.counts(app.default_queue))["waiting"] == 5
        async with running(app, concurrency=1):
            assert await aioqueue.gather(*low, *high, *later, timeout=10) == [0, 1, 2, 10, 11, 99]
    assert order == [10, 11, 0, 1, 2, 99]
