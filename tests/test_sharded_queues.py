"""Sharded queues (issue 12, item 2): one logical queue over N slots.

Runs on one server (the default) and under ``--topology cluster``, where the
shards' slots sit on different primaries.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from datetime import timedelta

import anyio
import pytest

import aioqueue
from aioqueue import JobContext
from aioqueue.broker_admin import BrokerAdmin, JobState
from aioqueue.broker_stats import recent_minutes
from aioqueue.cli import main
from aioqueue.keys import shard_index, shard_key, shard_name
from aioqueue.leases import Reaper, Renewer
from aioqueue.roles import WorkerState
from aioqueue.running import RunningJobs
from aioqueue.testing import advance, drain
from aioqueue.workflow import chain, group

from . import cli_app
from .conftest import running
from .helpers import wait_until

SHARDS = 4


def _ids_in_shard(shard: int, count: int, shards: int = SHARDS, stem: str = "j") -> list[str]:
    """``count`` job ids that land in ``shard``."""
    ids: list[str] = []
    n = 0
    while len(ids) < count:
        candidate = f"{stem}{n}"
        if shard_index(candidate, shards) == shard:
            ids.append(candidate)
        n += 1
    return ids


def _admin(app: aioqueue.App) -> BrokerAdmin:
    return BrokerAdmin(app.broker.lane, app.prefix, app.broker.shards)


async def _waiting_by_shard(app: aioqueue.App, queue: str, shards: int = SHARDS) -> list[int]:
    return [(await app.broker.counts(shard_name(queue, i)))["waiting"] for i in range(shards)]


def test_shard_choice_is_a_stable_function_of_the_id() -> None:
    # CRC-32 of the id: the same in every process, on every host, forever
    assert [shard_index(f"order-{n}", 4) for n in range(8)] == [
        shard_index(f"order-{n}", 4) for n in range(8)]
    assert shard_index("order-42", 4) == zlib.crc32(b"order-42") % 4
    # a workflow's members follow the workflow; a schedule's ticks follow the schedule
    assert shard_key("AbCdEfGhIjKlMnOp.3") == shard_key("AbCdEfGhIjKlMnOp.cb") \
        == "AbCdEfGhIjKlMnOp"
    assert shard_key("cron.nightly.1700000000000") == "cron.nightly"
    assert shard_key("user.17") == "user.17"


def test_bad_shard_counts_refused() -> None:
    for bad in (0, -1, 257, 2.0, True, "4"):
        with pytest.raises(aioqueue.ConfigurationError):
            aioqueue.App("redis://unused", queue_shards={"emails": bad})  # type: ignore[dict-item]
    with pytest.raises(aioqueue.ConfigurationError):
        aioqueue.App("redis://unused", queue_shards={"em#ails": 2})


async def test_an_id_enqueued_twice_lands_once_in_its_shard(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS})

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        for _ in range(3):
            job = await work.options(job_id="order-42").enqueue(1)
        waiting = await _waiting_by_shard(app, queue_name)
        assert sum(waiting) == 1
        assert waiting[shard_index("order-42", SHARDS)] == 1
        assert await job.status() is aioqueue.JobStatus.QUEUED
        # a process that does not declare the shards reads them from Redis
        other = make_app(queue=queue_name)
        async with other:
            assert other.broker.shards == {queue_name: SHARDS}
            assert await other.job("order-42", queue_name).status() is aioqueue.JobStatus.QUEUED
            assert (await other.queue_info(queue_name))["waiting"] == 1


async def test_every_shard_is_drained(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS})
    done: list[str] = []

    @app.task
    async def work(ctx: JobContext, n: int) -> int:
        assert ctx.queue == queue_name  # the logical queue, not the shard
        await ctx.progress(1.0)
        done.append(ctx.job_id)
        return n * 2

    async with app:
        jobs = await work.enqueue_many(work.bind(n) for n in range(150))
        jobs += [await work.enqueue(n) for n in range(150, 200)]
        waiting = await _waiting_by_shard(app, queue_name)
        assert sum(waiting) == 200 and all(n > 10 for n in waiting), waiting
        async with running(app, concurrency=8):
            results = await aioqueue.gather(*jobs, timeout=30)
        assert results == [2 * n for n in range(200)]
        assert sorted(done) == sorted(j.id for j in jobs)
        info = await app.queue_info(queue_name)
        assert (info["waiting"], info["running"], info["succeeded"]) == (0, 0, 200)
        assert await _waiting_by_shard(app, queue_name) == [0] * SHARDS


async def test_a_busy_shard_does_not_starve_the_others(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: 2})
    order: list[str] = []

    @app.task
    async def work(tag: str) -> None:
        await anyio.sleep(0.01)
        order.append(tag)

    async with app:
        busy = _ids_in_shard(0, 60, 2, "busy")
        quiet = _ids_in_shard(1, 30, 2, "quiet")
        for job_id in busy:
            await work.options(job_id=job_id).enqueue("busy")
        for job_id in quiet:
            await work.options(job_id=job_id).enqueue("quiet")
        async with running(app, concurrency=2):
            await wait_until(lambda: len(order) == 90, 30, what="all jobs")
    # both shards had a backlog: each got its turn from the start, none
    # waited for the other to drain
    first_half = order[:45]
    assert first_half.count("quiet") >= 10, order
    assert first_half.count("busy") >= 10, order
    assert order.index("quiet") < 10


async def test_a_job_in_an_idle_shard_runs_while_another_is_busy(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: 2})
    order: list[str] = []

    @app.task
    async def work(tag: str) -> None:
        await anyio.sleep(0.01)
        order.append(tag)

    async with app:
        for job_id in _ids_in_shard(0, 100, 2, "busy"):
            await work.options(job_id=job_id).enqueue("busy")
        async with running(app, concurrency=2):
            await wait_until(lambda: len(order) >= 5, 10, what="the busy shard runs")
            for job_id in _ids_in_shard(1, 3, 2, "late"):
                await work.options(job_id=job_id).enqueue("late")
            await wait_until(lambda: order.count("late") == 3, 10, what="the late jobs")
            assert order.count("busy") < 100, "the late jobs waited for the busy shard"
            # one slot is enough for ~1 s of work: a fetcher that let the idle
            # one go first and was not woken again for what was left would
            # wait out every idle wait (~11 s here)
            await wait_until(lambda: len(order) == 103, 6, what="all jobs")


async def test_a_fetcher_that_let_an_older_one_go_first_gets_the_rest() -> None:
    slots = RunningJobs(2)
    older, younger = object(), object()
    woken: list[object] = []

    async def wait(fetcher: object, ticket: int) -> None:
        while not slots.has_turn(ticket):
            await slots.wait_turn(fetcher, ticket)
        woken.append(fetcher)

    slots.reserve(2)
    first, second = slots.next_turn(), slots.next_turn()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, younger, second)
            tg.start_soon(wait, older, first)
            await anyio.sleep(0.01)
            slots.release(2)
            await wait_until(lambda: woken, 1)
            assert woken == [older]  # the older claim goes first
            slots.reserve(1)  # ...and takes one slot: the younger takes the other
    assert woken == [older, younger]


async def test_delays_retries_and_dead_letters_per_logical_queue(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS})
    attempts: dict[str, int] = {}

    @app.task(max_tries=2)
    async def flaky(ctx: JobContext, fail: bool) -> str:
        attempts[ctx.job_id] = ctx.attempt
        if fail:
            raise ValueError("always")
        return "ok"

    async with app:
        dead = [await flaky.enqueue(True) for _ in range(12)]
        delayed = [await flaky.options(delay=0.3).enqueue(False) for _ in range(12)]
        info = await app.queue_info(queue_name)
        assert (info["waiting"], info["scheduled"]) == (12, 12)
        async with running(app, concurrency=8):
            assert await aioqueue.gather(*delayed, timeout=20) == ["ok"] * 12
            for job in dead:
                with pytest.raises(aioqueue.JobFailed):
                    await job.result(timeout=20)
            info = await app.queue_info(queue_name)
            assert (info["dead"], info["succeeded"]) == (12, 12)
            assert all(attempts[j.id] == 2 for j in dead)
            letters = await app.dead_letters(queue_name, limit=100)
            assert sorted(i.id for i in letters) == sorted(j.id for j in dead)
            assert all(i.queue == queue_name for i in letters)
            assert len(await app.dead_letters(queue_name, limit=5, offset=10)) == 2
            replayed = await app.replay_dead([j.id for j in dead[:4]], queue=queue_name)
            assert sorted(replayed) == sorted(j.id for j in dead[:4])
            for job in dead[:4]:
                with pytest.raises(aioqueue.JobFailed):
                    await job.result(timeout=20)
        assert await app.purge_dead(queue=queue_name) == 12
        assert (await app.queue_info(queue_name))["dead"] == 0


async def test_info_jobs_lookup_pause_and_purge_aggregate_over_shards(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS})

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        jobs = [await work.options(priority=n % 2).enqueue(n) for n in range(30)]
        await work.options(delay=60).enqueue(99)
        admin = _admin(app)
        (summary,) = await admin.summaries([queue_name])
        assert (summary.waiting, summary.scheduled, summary.shards) == (30, 1, SHARDS)
        assert summary.waiting_by_priority == {1: 15, 0: 15}
        assert summary.oldest_waiting_age_s is not None
        # a page at a time, across the shards: every waiting job exactly once
        seen: list[str] = []
        cursor = None
        while True:
            page = await admin.jobs(queue_name, JobState.WAITING, limit=7, cursor=cursor)
            assert page.total == 30
            seen += [row.id for row in page.jobs]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sorted(seen) == sorted(j.id for j in jobs)
        # shard after shard; within one shard, the higher priority comes first
        rows = (await admin.jobs(queue_name, "waiting", limit=30)).jobs
        shard_of_rows = [shard_index(r.id, SHARDS) for r in rows]
        assert shard_of_rows == sorted(shard_of_rows)
        for shard in range(SHARDS):
            levels = [r.priority for r in rows if shard_index(r.id, SHARDS) == shard]
            assert levels == sorted(levels, reverse=True)
        with pytest.raises(aioqueue.ConfigurationError):
            await admin.jobs(queue_name, JobState.WAITING, cursor=f"{SHARDS}/0:0")
        # the job lookup of 'aioqueue job ID' finds the shard from the id
        assert await admin.find_queues(jobs[3].id, [queue_name]) == [queue_name]
        await admin.pause(queue_name)
        assert await admin.is_paused(queue_name)
        async with running(app, concurrency=4):
            await anyio.sleep(0.3)
            assert (await app.queue_info(queue_name))["waiting"] == 30
            await admin.resume(queue_name)
            assert not await admin.is_paused(queue_name)
            assert await aioqueue.gather(*jobs[:5], timeout=20) == list(range(5))
            await wait_until(lambda: _drained(app, queue_name), 20, what="drained")
        assert await admin.stored_result(queue_name, jobs[3].id) == 3
        (summary,) = await admin.summaries([queue_name])
        assert summary.counters.get("succeeded") == 30
        assert await admin.purge(queue_name, "scheduled", result_ttl_ms=60_000) == 1


async def _drained(app: aioqueue.App, queue: str) -> bool:
    info = await app.queue_info(queue)
    return info["waiting"] == 0 and info["running"] == 0


async def test_a_workflow_stays_in_the_shard_of_its_id(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS})

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    async with app:
        flows = [await chain(add.s(1, 2), double.s(), double.s()).enqueue()
                 for _ in range(6)]
        groups = [await group(add.s(i, i) for i in range(5)).enqueue() for _ in range(6)]
        for wf in [*flows, *groups]:
            home = shard_index(wf.id, SHARDS)
            member_ids = [m.id for m in await wf.members()]
            assert {shard_index(i, SHARDS) for i in member_ids} == {home}
            waiting = await _waiting_by_shard(app, queue_name)
            assert waiting[home] > 0
        async with running(app, concurrency=8):
            assert [await wf.result(timeout=20) for wf in flows] == [12] * 6
            assert [await wf.result(timeout=20) for wf in groups] == [[0, 2, 4, 6, 8]] * 6


async def test_a_schedule_fires_on_a_sharded_queue(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS})
    runs: list[str] = []

    @app.cron(every=timedelta(seconds=0.2), name="tick")
    @app.task
    async def beat(ctx: JobContext) -> None:
        runs.append(ctx.job_id)

    async with app, running(app, concurrency=2), running(app, concurrency=2):
        await wait_until(lambda: len(runs) >= 3, 10, what="three ticks")
    assert len(set(runs)) == len(runs), "a tick ran twice"


async def test_the_count_changes_only_when_the_queue_is_empty(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS})

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        job = await work.enqueue(1)
    for other in (2, 1):
        with pytest.raises(aioqueue.ConfigurationError, match="only while the queue is empty"):
            async with make_app(queue=queue_name, queue_shards={queue_name: other}):
                pass
    async with app, running(app, concurrency=2):
        assert await job.result(timeout=20) == 1
    resized = make_app(queue=queue_name, queue_shards={queue_name: 2})
    async with resized:
        assert resized.broker.shards == {queue_name: 2}
    unsharded = make_app(queue=queue_name, queue_shards={queue_name: 1})
    async with unsharded:
        assert unsharded.broker.shards == {}


async def test_unique_keys_and_flow_limits_are_refused_on_sharded_queues(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: 2})

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        with pytest.raises(aioqueue.ConfigurationError, match="unique"):
            await work.options(unique_key="k").enqueue(1)
    limited = make_app(queue=queue_name, queue_shards={queue_name: 2})
    limited.limit_queue(queue_name, "10/s")
    with pytest.raises(aioqueue.ConfigurationError, match="rate limits"):
        async with limited:
            pass
    grouped = make_app(queue=queue_name)  # the stored count applies

    @grouped.task(max_concurrency=2)
    async def per_customer(customer: str) -> None:
        return None

    with pytest.raises(aioqueue.ConfigurationError, match="concurrency limits"):
        async with grouped:
            pass
    metered = make_app(queue=queue_name)

    @metered.task(concurrency_key=lambda shop, **_: shop, key_rate_limit="1/s")
    async def per_shop(shop: str) -> None:
        return None

    with pytest.raises(aioqueue.ConfigurationError, match="concurrency limits"):
        async with metered:
            pass


def _cli(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main([*argv[:1], "tests.cli_app:app", "--url", url, *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_reads_the_stored_shard_count(
        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # tests.cli_app declares no shards: the CLI learns them from Redis
    async def setup() -> list[str]:
        async with aioqueue.App(redis_url, queue="other", queue_shards={"other": 3}):
            pass
        app = cli_app.app
        app.url = redis_url
        async with app:
            assert app.broker.shards == {"other": 3}
            return [(await cli_app.elsewhere.enqueue(n)).id for n in range(9)]

    ids = anyio.run(setup)
    code, out, _ = _cli(capsys, redis_url, "info", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and rows["other"]["shards"] == 3 and rows["other"]["waiting"] == 9
    code, out, _ = _cli(capsys, redis_url, "jobs", "other", "--limit", "5", "--json")
    page = json.loads(out)
    assert code == 0 and page["total"] == 9 and len(page["jobs"]) == 5
    code, out, _ = _cli(capsys, redis_url, "jobs", "other", "--cursor", page["next_cursor"],
                        "--json")
    rest = json.loads(out)
    assert sorted(j["id"] for j in page["jobs"] + rest["jobs"]) == sorted(ids)
    code, out, _ = _cli(capsys, redis_url, "job", ids[4], "--queue", "other", "--json")
    assert code == 0 and json.loads(out)["status"] == "queued"
    code, out, _ = _cli(capsys, redis_url, "pause", "other", "--json")
    assert code == 0 and json.loads(out)["paused"] is True
    code, out, _ = _cli(capsys, redis_url, "purge", "other", "--yes", "--json")
    assert code == 0 and json.loads(out)["purged"] == 9
    code, _, err = _cli(capsys, redis_url, "limits", "--queue", "other", "--set", "5/s")
    assert code != 0 and "sharded" in err


async def test_cancel_and_events_reach_a_job_in_any_shard(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS},
                   worker=aioqueue.WorkerSettings(lease_s=30, renew_interval_s=10,
                                                  reaper_interval_s=0.05, block_s=0.2))
    started: set[str] = set()

    @app.task
    async def forever(ctx: JobContext) -> None:
        await ctx.progress(0.5, "half")
        started.add(ctx.job_id)
        await anyio.sleep(60)

    async with app, running(app, concurrency=8):
        # one job in each shard: the cancel request travels on that shard's channel
        jobs = [await forever.options(job_id=_ids_in_shard(i, 1, stem="c")[0]).enqueue()
                for i in range(SHARDS)]
        await wait_until(lambda: len(started) == SHARDS, 10, what="all running")
        for job in jobs:
            events = job.events()
            first = await events.__anext__()
            assert first.status is aioqueue.JobStatus.ACTIVE
            assert first.progress is not None and first.progress.message == "half"
            await events.aclose()  # type: ignore[attr-defined]
            assert await job.cancel("stop") is aioqueue.CancelOutcome.REQUESTED
        for job in jobs:
            with pytest.raises(aioqueue.JobCancelled):
                await job.result(timeout=5)  # not the renewal 10 s later


async def test_the_testing_clock_moves_jobs_of_every_shard(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS})

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        later = [await work.options(delay=3600).enqueue(n) for n in range(12)]
        assert await drain(app) == []
        assert await advance(app, 3600) == 12
        assert sorted((await drain(app)).results()) == list(range(12))
        assert {await job.status() for job in later} == {aioqueue.JobStatus.SUCCEEDED}


async def test_a_burst_worker_stops_when_the_last_job_ends(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    # idle fetchers of shards drained earlier block on their wake-up lists
    # for up to block_s: the end of the last job must cut those waits short
    settings = aioqueue.WorkerSettings(block_s=5.0, burst_horizon_s=0.0)
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS}, worker=settings)
    ended: list[float] = []

    @app.task
    async def work(n: int) -> None:
        await anyio.sleep(0.3 if n == 0 else 0.0)
        ended.append(time.monotonic())

    async with app:
        for n in range(40):
            await work.enqueue(n)
        with anyio.fail_after(20):
            await aioqueue.Supervisor(app, concurrency=8, burst=True).run()
        stopped = time.monotonic()
    assert len(ended) == 40
    assert stopped - max(ended) < 2.0, "the worker waited out an idle fetcher's block_s"


def test_the_dashboard_shows_a_sharded_queue(redis_url: str) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("jinja2")
    from starlette.testclient import TestClient

    from aioqueue.dashboard import create_dashboard

    async def setup() -> list[str]:
        async with aioqueue.App(redis_url, queue="other", queue_shards={"other": 3}):
            pass
        cli_app.app.url = redis_url
        async with cli_app.app:
            return [(await cli_app.elsewhere.enqueue(n)).id for n in range(6)]

    ids = anyio.run(setup)
    token = "t0ps3cret-t0ps3cret"
    dashboard = create_dashboard(cli_app.app, token=token, open_app=True)
    with TestClient(dashboard, base_url="http://127.0.0.1:8080",
                    headers={"Authorization": f"Bearer {token}"}) as client:
        for path in ["/", "/queues/other", "/queues/other?state=scheduled", "/dead"]:
            assert client.get(path).status_code == 200, path
        page = client.get("/queues/other").text
        assert all(job_id in page for job_id in ids)  # every shard's jobs listed
        job = client.get(f"/job?id={ids[2]}")
        assert job.status_code == 200 and "queued" in job.text


async def test_operator_reads_span_many_queues_and_shards(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    # on a cluster these queues' slots sit on different primaries: the
    # operator reads that span them go out as one pipeline per primary
    app = make_app(queue=queue_name, queue_shards={queue_name: SHARDS})

    @app.task
    async def work(n: int) -> int:
        return n

    others = [f"{queue_name}-{i}" for i in range(10)]
    async with app:
        job = await work.enqueue(1)
        for i, other in enumerate(others):
            await work.options(queue=other).enqueue(i)
        admin = _admin(app)
        summaries = await admin.summaries([queue_name, *others])
        assert [s.waiting for s in summaries] == [1] * 11
        assert [s.shards for s in summaries] == [SHARDS] + [1] * 10
        assert await admin.find_queues(job.id, [*others, queue_name]) == [queue_name]
        minutes = await recent_minutes(app.broker.lane, app.prefix, [queue_name, *others],
                                       minutes=2, shards=app.broker.shards)
        assert set(minutes) == {queue_name, *others}


async def test_a_failing_shard_does_not_hold_up_the_renewal_of_the_others(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    # on a cluster, a shard whose primary is failing over must not cost the
    # jobs of the other shards their leases
    app = make_app(queue=queue_name, queue_shards={queue_name: 2})

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        shards = app.broker.shard_queues(queue_name)
        for shard in range(2):
            await work.options(job_id=_ids_in_shard(shard, 1, 2, "r")[0]).enqueue(shard)
        state = WorkerState(app.broker, app.worker_settings, "w-test", shards,
                            RunningJobs(10))
        claimed = []
        async with app.broker.blocking_client("test") as conn:
            for shard in shards:
                jobs, _ = await app.broker.claim(conn, shard, 1, 200, "w-test")
                claimed += jobs
        running = [state.running.add(job, time.monotonic() + 1) for job in claimed]
        broken = app.broker.keys(shards[0]).leases
        await app.broker.client.delete(broken)
        await app.broker.client.set(broken, "not a zset")  # shard 0's renewals now fail
        healthy = app.broker.keys(shards[1]).leases
        before = await app.broker.client.zscore(healthy, claimed[1].id)
        sent = time.monotonic()
        with pytest.raises(aioqueue.AioqueueError):
            await Renewer(state).step()
        after = await app.broker.client.zscore(healthy, claimed[1].id)
        assert before is not None and after is not None and after > before
        assert running[1].lease_until >= sent + app.worker_settings.lease_s
        await app.broker.client.delete(broken)


async def test_a_failing_shard_does_not_hold_up_the_reaping_of_the_others(
        make_app: Callable[..., aioqueue.App], queue_name: str) -> None:
    app = make_app(queue=queue_name, queue_shards={queue_name: 2})

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        shards = app.broker.shard_queues(queue_name)
        job = await work.options(job_id=_ids_in_shard(1, 1, 2, "x")[0]).enqueue(1)
        async with app.broker.blocking_client("test") as conn:
            (claimed,), _ = await app.broker.claim(conn, shards[1], 1, 1, "w-gone")
        await anyio.sleep(0.01)  # the 1 ms lease runs out on the server
        broken = app.broker.keys(shards[0]).leases
        await app.broker.client.set(broken, "not a zset")  # shard 0's reaps now fail
        state = WorkerState(app.broker, app.worker_settings, "w-test", shards,
                            RunningJobs(10))
        reaper = Reaper(state, dead_letter_ttl_ms=60_000, result_ttl_ms=60_000)
        with pytest.raises(aioqueue.AioqueueError):
            await reaper.step()
        assert claimed.id == job.id
        assert await job.status() is aioqueue.JobStatus.QUEUED  # shard 1 was reaped
        await app.broker.client.delete(broken)
