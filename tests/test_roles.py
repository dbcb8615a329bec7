"""The worker's roles, each driven alone through its ``step()`` against a real
server: no supervisor, no background loops."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import pytest

import aioqueue
from aioqueue.broker import ClaimedJob, Settlement
from aioqueue.cancel_listener import CancelListener
from aioqueue.fetcher import Fetcher
from aioqueue.leases import LeaseClock, Reaper, Renewer
from aioqueue.roles import WorkerState
from aioqueue.running import RunningJobs, StopReason
from aioqueue.settler import Settler

LEASE_MS = 30_000


def _state(app: aioqueue.App, capacity: int = 10) -> WorkerState:
    return WorkerState(app.broker, app.worker_settings, "w-test", [app.default_queue],
                       RunningJobs(capacity))


async def _claim(app: aioqueue.App, count: int = 1, lease_ms: int = LEASE_MS
                 ) -> list[ClaimedJob]:
    async with app.broker.blocking_client("test") as conn:
        jobs, _ = await app.broker.claim(conn, app.default_queue, count, lease_ms, "w-test")
    return jobs


def _app_with_task(make_app: Callable[..., aioqueue.App]) -> tuple[aioqueue.App, aioqueue.Task]:
    app = make_app()

    @app.task
    async def work(n: int) -> int:
        return n

    return app, work


async def test_fetcher_step_claims_only_free_slots(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app, work = _app_with_task(make_app)
    async with app:
        for n in range(5):
            await work.enqueue(n)
        state = _state(app, capacity=2)
        started: list[ClaimedJob] = []

        def start(job: ClaimedJob, lease_until: float) -> None:
            state.running.add(job, lease_until)
            started.append(job)

        fetcher = Fetcher(state, app.default_queue, start=start, hand_back=started.append)
        async with app.broker.blocking_client("test") as conn:
            assert await fetcher.step(conn) is True
        assert len(started) == 2 and state.running.free == 0 and state.running.reserved == 0
        assert (await app.broker.counts(app.default_queue))["waiting"] == 3


async def test_fetcher_step_hands_back_what_it_claims_after_the_stop_request(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app, work = _app_with_task(make_app)
    async with app:
        await work.enqueue(1)
        state = _state(app)
        handed: list[ClaimedJob] = []

        def start(job: ClaimedJob, lease_until: float) -> None:
            raise AssertionError("a job claimed after the stop request must not start")

        fetcher = Fetcher(state, app.default_queue, start=start, hand_back=handed.append)
        async with app.broker.blocking_client("test") as conn:
            # the stop request arrives while the claim is on its way
            original = app.broker.claim

            async def claim_then_stop(*args: object, **kwargs: object) -> object:
                result = await original(*args, **kwargs)  # type: ignore[arg-type]
                state.stopping.set()
                return result

            app.broker.claim = claim_then_stop  # type: ignore[method-assign]
            assert await fetcher.step(conn) is False
        assert len(handed) == 1


async def test_settler_step_sends_outcomes_and_frees_slots(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app, work = _app_with_task(make_app)
    async with app:
        job = await work.enqueue(7)
        state = _state(app, capacity=1)
        [claimed] = await _claim(app)
        running = state.running.add(claimed, time.monotonic() + 30)
        settler = Settler(state, result_ttl_ms=60_000, dead_letter_ttl_ms=60_000)
        settler.submit(running, Settlement(claimed.id, claimed.token, "ok", "7"))
        assert running.settling and state.running.free == 0
        await settler.step()
        assert state.running.free == 1 and state.counters["succeeded"] == 1
        assert await job.result(timeout=1) == 7
        # sending the same outcome again (its reply was lost) is accepted, not stale
        again = state.running.add(claimed, time.monotonic() + 30)
        settler.submit(again, Settlement(claimed.id, claimed.token, "ok", "7"))
        await settler.step()
        assert state.counters["stale_settle"] == 0 and state.running.free == 1
        assert await job.result(timeout=1) == 7


async def test_renewer_step_extends_leases_and_stops_a_run_whose_lease_is_gone(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app, work = _app_with_task(make_app)
    async with app:
        await work.enqueue(1)
        await work.enqueue(2)
        state = _state(app)
        kept, gone = await _claim(app, count=2, lease_ms=200)
        keys = app.broker.keys(app.default_queue)
        before = await app.broker.client.zscore(keys.leases, kept.id)
        r_kept = state.running.add(kept, time.monotonic() + 1)
        r_gone = state.running.add(gone, time.monotonic() + 1)
        scope = r_gone.scope = anyio.CancelScope()
        await app.broker.client.zrem(keys.leases, gone.id)  # as the reaper would
        sent = time.monotonic()
        await Renewer(state).step()
        after = await app.broker.client.zscore(keys.leases, kept.id)
        assert after is not None and before is not None and after > before
        assert r_kept.lease_until >= sent + app.worker_settings.lease_s
        assert r_gone.lost and r_gone.stop_reason is StopReason.LEASE_LOST
        assert scope.cancel_called and state.counters["lost_leases"] == 1


async def test_renewer_keeps_renewing_a_job_whose_outcome_is_on_its_way(
        make_app: Callable[..., aioqueue.App]) -> None:
    # a settle slowed by the link must not let the lease expire under it (the
    # job would be re-delivered and the outcome refused)
    app, work = _app_with_task(make_app)
    async with app:
        await work.enqueue(1)
        state = _state(app)
        (job,) = await _claim(app, count=1, lease_ms=200)
        keys = app.broker.keys(app.default_queue)
        before = await app.broker.client.zscore(keys.leases, job.id)
        running = state.running.add(job, time.monotonic() + 1)
        running.settling = True
        await Renewer(state).step()
        after = await app.broker.client.zscore(keys.leases, job.id)
        assert after is not None and before is not None and after > before
        assert not running.lost and state.counters["renewed"] == 1


async def test_lease_clock_step_stops_only_runs_past_their_lease(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app, work = _app_with_task(make_app)
    async with app:
        await work.enqueue(1)
        await work.enqueue(2)
        state = _state(app)
        late, fine = await _claim(app, count=2)
        # the clock allows one lease past the lease's deadline
        allowance = app.worker_settings.lease_s
        r_late = state.running.add(late, time.monotonic() - allowance - 0.01)
        r_fine = state.running.add(fine, time.monotonic() - allowance + 5)
        r_late.scope, r_fine.scope = anyio.CancelScope(), anyio.CancelScope()
        wait = LeaseClock(state).step()
        assert r_late.stop_reason is StopReason.LEASE_LOST and r_late.scope.cancel_called
        assert r_fine.stop_reason is None and not r_fine.scope.cancel_called
        assert 0 < wait <= app.worker_settings.renew_every_s


async def test_reaper_step_redelivers_an_expired_lease(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app, work = _app_with_task(make_app)
    async with app:
        job = await work.enqueue(1)
        await _claim(app, lease_ms=1)
        await anyio.sleep(0.01)  # let the 1 ms lease run out on the server
        reaper = Reaper(_state(app), dead_letter_ttl_ms=60_000, result_ttl_ms=60_000)
        assert await reaper.step() == (1, 0)
        assert await job.status() is aioqueue.JobStatus.QUEUED


async def test_cancel_listener_step_stops_the_run_with_the_stored_reason(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app, work = _app_with_task(make_app)
    async with app:
        job = await work.enqueue(1)
        state = _state(app)
        [claimed] = await _claim(app)
        running = state.running.add(claimed, time.monotonic() + 30)
        running.scope = anyio.CancelScope()
        listener = CancelListener(state)
        assert await listener.step("not-running-here") is False
        assert await job.cancel("changed my mind") is aioqueue.CancelOutcome.REQUESTED
        assert await listener.step(job.id) is True
        assert running.stop_reason is StopReason.CANCEL
        assert running.cancel_reason == "changed my mind"


@pytest.mark.parametrize("wanted", [0, 3, 10])
def test_running_jobs_reserve_never_exceeds_capacity(wanted: int) -> None:
    jobs = RunningJobs(capacity=4)
    first = jobs.reserve(wanted)
    second = jobs.reserve(wanted)
    assert first + second <= 4 and jobs.free == 4 - first - second
    jobs.release(first + second)
    assert jobs.free == 4


async def test_fetcher_gives_back_a_reservation_whose_reply_was_lost_at_the_stop(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app, work = _app_with_task(make_app)
    async with app:
        job = await work.enqueue(1)
        state = _state(app)
        handed: list[ClaimedJob] = []
        fetcher = Fetcher(state, app.default_queue, start=lambda j, t: None,
                          hand_back=handed.append)
        # a claim ran on the server but its reply never came back
        fetcher.reservation = "lost-reply"
        async with app.broker.blocking_client("test") as conn:
            await app.broker.claim(conn, app.default_queue, 5, LEASE_MS, "w-test", "lost-reply")
        assert await job.status() is aioqueue.JobStatus.ACTIVE
        state.stopping.set()
        assert [j.id for j in await fetcher.give_back_reservation()] == [job.id]
        assert [j.id for j in handed] == [job.id] and fetcher.reservation is None
