"""No script fails half-way: whatever text a task produces and whatever
arguments a script receives, a script either does its whole job or changes
nothing (and the worker goes on)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio

import aioqueue
import aioqueue.broker_workflow
from aioqueue.broker import Settlement
from aioqueue.broker_admin import BrokerAdmin
from aioqueue.broker_flow import enqueue_flow
from aioqueue.broker_workflow import MemberJob, cancel_workflow, create_workflow
from aioqueue.flow import UniqueKey, group_id
from aioqueue.keys import QueueKeys
from aioqueue.lane import CommandLane
from aioqueue.roles import WorkerState
from aioqueue.running import RunningJobs
from aioqueue.script_codes import EnqueueCode, RenewCode, SettleCode
from aioqueue.scripts import SCRIPT_NAMES
from aioqueue.settler import Settler

from .conftest import running
from .harness.checker import fsck, snapshot
from .helpers import wait_until


async def test_task_error_text_with_a_lone_surrogate_fails_only_that_job(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()
    name = os.fsdecode(b"caf\xe9.csv")  # an ordinary non-UTF-8 file name

    @app.task(max_tries=2)
    async def read_file(ctx: aioqueue.JobContext) -> None:
        raise FileNotFoundError(f"no such file: {name}")

    @app.task()
    async def ping(ctx: aioqueue.JobContext) -> str:
        return "pong"

    async with app, running(app):
        job = await read_file.enqueue()
        with pytest.raises(aioqueue.JobFailed) as failed:
            await job.result(timeout=30)
        assert failed.value.error_type == "FileNotFoundError"
        assert "no such file: caf" in failed.value.error_message
        info = await job.info()
        assert info.status is aioqueue.JobStatus.FAILED and info.attempt == 2
        assert [e["type"] for e in info.errors] == ["FileNotFoundError"] * 2
        # the worker is still there
        assert await (await ping.enqueue()).result(timeout=30) == "pong"


HOSTILE: list[bytes] = [
    b"",
    b"\xff\xfe\xfd",                      # not UTF-8
    "caf\udce9".encode("utf-8", "surrogatepass"),  # an encoded lone surrogate
    b'"\\udce9"',                         # JSON escape of a lone surrogate (cjson refuses it)
    b'{"type": "E", "message": "\\udce9"}',
    b"x" * 200_000,                       # huge
    b"abc", b"nan", b"inf", b"-1", b"1e3", b"05", b" 5", b"99999999999999999999",
]


async def dump_all(client: Any) -> dict[bytes, bytes]:
    return {key: await client.dump(key) async for key in client.scan_iter(count=1000)}


async def restore_all(client: Any, dumps: dict[bytes, bytes]) -> None:
    await client.flushdb()
    for key, value in dumps.items():
        await client.restore(key, 0, value)


async def capture_calls(app: aioqueue.App, monkeypatch: pytest.MonkeyPatch,
                        raw: Any, base: dict[bytes, bytes]) -> list[tuple[Any, ...]]:
    """One real call of every script, as its broker wrapper sends it, each
    against the same starting key space."""
    monkeypatch.setattr(aioqueue.broker_workflow, "CHUNK", 1)  # a group in chunks
    sent: list[tuple[Any, ...]] = []
    original, original_many = CommandLane.execute, CommandLane.execute_many

    async def spy(self: CommandLane, *args: Any, timeout_s: Any = -1.0) -> Any:
        sent.append(args)
        return await original(self, *args, timeout_s=timeout_s)

    async def spy_many(self: CommandLane, commands: Any, timeout_s: Any = -1.0) -> Any:
        sent.extend(tuple(c) for c in commands)
        return await original_many(self, commands, timeout_s)

    monkeypatch.setattr(CommandLane, "execute", spy)
    monkeypatch.setattr(CommandLane, "execute_many", spy_many)
    broker, q = app.broker, app.default_queue
    ids = {"queued": "j-queued", "active": "j-active", "dead": "j-dead"}
    settle_kw = {"default_result_ttl_ms": 60_000, "dead_letter_ttl_ms": 60_000}
    calls = [
        lambda: broker.enqueue(q, "new", "add", '{"args": [1, 2]}', extra={"mt": 3}),
        # a traced enqueue: the producer's trace context rides with the overrides
        lambda: broker.enqueue(q, "new-traced", "add", '{"args": [1]}', extra={
            "mt": 2, "tc": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 k=v"}),
        lambda: broker.enqueue_many(q, [("n1", "add", '{"args": []}', 0, 0, None, {"rt": 5})]),
        lambda: enqueue_flow(broker, q, "grouped", "add", '{"args": [1]}',
                             group=group_id("add", "k1")),
        lambda: broker.fire_tick(q, "s", 60_000, "tick", "add", '{"args": []}', 0),
        lambda: broker.settle(q, [Settlement(ids["active"], "1", "retry",
                                             '{"type": "E", "message": "m"}', 0)], **settle_kw),
        lambda: broker.settle(q, [Settlement(ids["active"], "1", "ok", "3", 0)], **settle_kw),
        lambda: broker.settle(q, [Settlement(ids["active"], "1", "cancel", "why", 0)],
                              **settle_kw),
        lambda: broker.renew(q, [(ids["active"], "1")], 5_000),
        lambda: broker.reap(q, limit=10, max_deliveries=3, dead_letter_ttl_ms=60_000),
        lambda: broker.progress(q, ids["active"], "1", '{"fraction": 0.5, "message": ""}'),
        lambda: broker.cancel(q, ids["queued"], "stop", 60_000),
        lambda: broker.cancel(q, ids["active"], "stop", 60_000),
        lambda: broker.replay(q, [ids["dead"]]),
        lambda: broker.purge_dead(q, [ids["dead"]]),
        lambda: create_workflow(broker, q, "wf2", "chain", 2, False, "",
                                [MemberJob("wf2.0", "add", '{"args": [1]}', 0, "mt\x1f2")],
                                ["wf2.1\x1fadd\x1f\x1f{}\x1f0\x1f"]),
        lambda: create_workflow(broker, q, "wf3", "group", 2, False, "",
                                [MemberJob(f"wf3.{i}", "add", '{"args": [1]}', 5, "")
                                 for i in range(2)], []),
        lambda: cancel_workflow(broker, q, "wf1", "stop", 60_000),
    ]
    for call in calls:
        await call()
        await restore_all(raw, base)
    async with broker.blocking_client("t") as lane:
        await broker.claim(lane, q, 2, 5_000, "w1")
    await restore_all(raw, base)
    monkeypatch.undo()
    return [c for c in sent if c[0] == "EVALSHA"]


async def test_every_script_argument_hostile_changes_nothing_or_stays_consistent(
    make_app: Callable[..., aioqueue.App], redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = make_app()

    @app.task(name="add")
    async def add(ctx: aioqueue.JobContext, a: int) -> int:
        return a

    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        # a key space with a job in every state
        for job_id in ("j-active", "j-dead"):
            await broker.enqueue(q, job_id, "add", '{"args": [1]}')
        async with broker.blocking_client("t") as lane:
            claimed, _ = await broker.claim(lane, q, 2, 600_000, "w1")
        dead = next(j for j in claimed if j.id == "j-dead")
        await broker.settle(q, [Settlement(dead.id, dead.token, "dead", "{}")],
                            default_result_ttl_ms=60_000, dead_letter_ttl_ms=600_000)
        await broker.enqueue(q, "j-queued", "add", '{"args": [2]}')
        await broker.enqueue(q, "j-later", "add", '{"args": [3]}', delay_ms=600_000)
        await enqueue_flow(broker, q, "j-grouped", "add", '{"args": [4]}',
                           group=group_id("add", "k1"))
        await create_workflow(broker, q, "wf1", "group", 2, True, "",
                              [MemberJob(f"wf1.{i}", "add", '{"args": [1]}', 0, "")
                               for i in range(2)], [])
        base = await dump_all(raw)
        assert not fsck(await snapshot(raw, app.prefix, q))
        calls = await capture_calls(app, monkeypatch, raw, base)
        names = {s.sha: s.name for s in broker.scripts.scripts.values()}
        assert {names[c[1]] for c in calls} == set(SCRIPT_NAMES)
        refused = 0
        for call in calls:
            numkeys = int(call[2])
            for position in range(3 + numkeys, len(call)):
                for value in HOSTILE:
                    hostile = (*call[:position], value, *call[position + 1:])
                    where = f"{names[call[1]]} ARGV[{position - 2 - numkeys}]={value[:20]!r}"
                    try:
                        await raw.execute_command(*hostile)
                    except redis.ResponseError as exc:
                        refused += 1
                        assert "aioqueue" in str(exc) or "WRONGTYPE" in str(exc), (
                            f"{where}: failed inside the script: {exc}")
                        assert await dump_all(raw) == base, f"{where}: failed half-way"
                    problems = fsck(await snapshot(raw, app.prefix, q))
                    assert not problems, f"{where}: {problems}"
                    await restore_all(raw, base)
        assert refused > 0
    await raw.aclose()


async def test_cancel_requested_before_the_worker_died_ends_the_job_cancelled(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task(name="slow")
    async def slow(ctx: aioqueue.JobContext) -> None:
        raise AssertionError("never runs here")

    async with app:
        broker, q = app.broker, app.default_queue
        job = await slow.enqueue()
        async with broker.blocking_client("dying-worker") as lane:
            claimed, _ = await broker.claim(lane, q, 1, 50, "dying-worker")
        assert [j.id for j in claimed] == [job.id]
        assert await job.cancel("user asked") is aioqueue.CancelOutcome.REQUESTED
        # the worker died: nobody renews or settles; the reaper finds the expired lease

        async def reaped() -> bool:
            await broker.reap(q, limit=10, max_deliveries=5, dead_letter_ttl_ms=60_000)
            return (await job.status()).is_final

        await wait_until(reaped, 10, what="the expired lease reaped")
        assert await job.status() is aioqueue.JobStatus.CANCELLED
        with pytest.raises(aioqueue.JobCancelled):
            await job.result(timeout=5)
        assert await broker.counts(q) == {"waiting": 0, "running": 0, "scheduled": 0,
                                          "dead": 0}


async def commandstat_calls(client: Any, command: str) -> int:
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_cancelling_a_queued_job_does_not_scan_its_wait_list(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = make_app()
    ran: list[int] = []

    @app.task(name="step")
    async def step(ctx: aioqueue.JobContext, n: int) -> int:
        ran.append(n)
        return n

    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        jobs = [await step.enqueue(n) for n in range(3)]
        await raw.config_resetstat()
        assert await jobs[1].cancel() is aioqueue.CancelOutcome.CANCELLED
        # O(1): no LREM over the wait list (29 ms at the tail of a million ids)
        assert await commandstat_calls(raw, "lrem") == 0
        assert await jobs[1].status() is aioqueue.JobStatus.CANCELLED
        async with running(app):
            assert await aioqueue.gather(jobs[0], jobs[2], timeout=30) == [0, 2]
        assert sorted(ran) == [0, 2]  # the cancelled one never ran
        with pytest.raises(aioqueue.JobCancelled):
            await jobs[1].result(timeout=5)
        assert not fsck(await snapshot(raw, app.prefix, app.default_queue))
    await raw.aclose()


async def test_error_history_keeps_the_last_20_attempts(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app(retry=aioqueue.RetryPolicy(backoff_s=0.001, backoff_max_s=0.001))

    @app.task(name="flaky", max_tries=25)
    async def flaky(ctx: aioqueue.JobContext) -> None:
        raise ValueError(f"attempt {ctx.attempt}")

    async with app, running(app):
        job = await flaky.enqueue()
        with pytest.raises(aioqueue.JobFailed):
            await job.result(timeout=60)
        info = await job.info()
    assert info.attempt == 25
    assert [e["message"] for e in info.errors] == [f"attempt {n}" for n in range(6, 26)]
    assert info.error is not None and info.error["message"] == "attempt 25"


async def test_cancel_requested_before_a_hand_back_ends_the_job_cancelled(
    make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app()

    @app.task(name="slow")
    async def slow(ctx: aioqueue.JobContext) -> None:
        raise AssertionError("never runs here")

    async with app:
        broker, q = app.broker, app.default_queue
        job = await slow.enqueue()
        async with broker.blocking_client("stopping-worker") as lane:
            (claimed,), _ = await broker.claim(lane, q, 1, 60_000, "stopping-worker")
        assert await job.cancel("user asked") is aioqueue.CancelOutcome.REQUESTED
        # the worker shuts down before it saw the request and hands the job back
        codes = await broker.settle(q, [Settlement(job.id, claimed.token, "requeue")],
                                    default_result_ttl_ms=60_000, dead_letter_ttl_ms=60_000)
        assert codes == [1]
        assert await job.status() is aioqueue.JobStatus.CANCELLED
        assert (await broker.counts(q))["waiting"] == 0


# -- a record key of another type, or a record with hostile fields, in the
# middle of a batch: the script does the other jobs and accounts for this one

SETTLE_TTLS = {"default_result_ttl_ms": 60_000, "dead_letter_ttl_ms": 60_000}


async def plant(raw: Any, key: str, kind: str = "string") -> None:
    """Replace ``key`` by a value of another type, as an operator or a bug would."""
    await raw.delete(key)
    if kind == "string":
        await raw.set(key, "not a job record")
    elif kind == "list":
        await raw.rpush(key, "x")
    else:
        await raw.zadd(key, {"x": 1})


def _adder(make_app: Callable[..., aioqueue.App]) -> aioqueue.App:
    app = make_app()

    @app.task(name="add")
    async def add(ctx: aioqueue.JobContext, a: int) -> int:
        return a

    return app


async def _claim_ids(app: aioqueue.App, ids: list[str], lease_ms: int = 600_000
                     ) -> dict[str, Any]:
    for job_id in ids:
        await app.broker.enqueue(app.default_queue, job_id, "add", '{"args": [1]}')
    async with app.broker.blocking_client("t") as lane:
        claimed, _ = await app.broker.claim(lane, app.default_queue, len(ids), lease_ms, "w1")
    assert sorted(j.id for j in claimed) == sorted(ids)
    return {j.id: j for j in claimed}


async def _status(raw: Any, app: aioqueue.App, job_id: str) -> str | None:
    value = await raw.hget(app.broker.keys(app.default_queue).job(job_id), "st")
    return value.decode() if value is not None else None


async def _check(raw: Any, app: aioqueue.App) -> Any:
    snap = await snapshot(raw, app.prefix, app.default_queue)
    assert not fsck(snap), fsck(snap)
    return snap


@pytest.mark.parametrize("kind", ["string", "list"])
async def test_settle_batch_with_a_foreign_typed_record_settles_the_others(
    make_app: Callable[..., aioqueue.App], redis_url: str, kind: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        jobs = await _claim_ids(app, ["s1", "s2", "s3", "s4", "s5", "s6"])
        await plant(raw, broker.keys(q).job("s3"), kind)
        err = '{"type": "E", "message": "m"}'
        batch = [Settlement("s1", jobs["s1"].token, "ok", "1"),
                 Settlement("s2", jobs["s2"].token, "retry", err, 0),
                 Settlement("s3", jobs["s3"].token, "ok", "1"),
                 Settlement("s4", jobs["s4"].token, "dead", err),
                 Settlement("s5", jobs["s5"].token, "requeue"),
                 Settlement("s6", jobs["s6"].token, "cancel", "why")]
        codes = await broker.settle(q, batch, **SETTLE_TTLS)
        applied = SettleCode.APPLIED
        assert codes == [applied, applied, SettleCode.MALFORMED, applied, applied, applied]
        assert [await _status(raw, app, j) for j in ("s1", "s2", "s4", "s5", "s6")] == [
            "succeeded", "queued", "failed", "queued", "cancelled"]
        snap = await _check(raw, app)
        assert snap.foreign == {"s3": kind}  # left alone: not ours to delete
        assert snap.stats["malformed_record"] == 1
        # the same batch again (its reply was lost): nothing counts twice
        again = await broker.settle(q, batch, **SETTLE_TTLS)
        assert again[2] is SettleCode.MALFORMED
        assert again[:2] == [SettleCode.ALREADY_APPLIED] * 2
        assert (await _check(raw, app)).stats["malformed_record"] == 1
    await raw.aclose()


HOSTILE_FIELDS: list[dict[str, str]] = [
    {"ne": "x"}, {"ne": "1e400"}, {"att": "nan"}, {"ts": "inf", "et": "nan"},
    {"ts": "1e300"}, {"rt": "nan"}, {"rt": "1e400"}, {"rt": "-5"}, {"rt": "0"},
    {"p": "nan"}, {"p": "inf"}, {"p": "1e3"}, {"lx": "x", "md": "nan"}, {"dlv": "x"},
]
"""Fields of a leased record that hold no number (its token 'tk' is compared
as text: another one makes a settle stale, as it should)."""


async def test_settle_with_hostile_record_fields_applies_every_outcome(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    err = '{"type": "E", "message": "m"}'
    async with app:
        broker, q = app.broker, app.default_queue
        jobs = await _claim_ids(app, ["h1", "h2", "h3"])
        base = await dump_all(raw)
        for fields in HOSTILE_FIELDS:
            for kind, payload, number in (("ok", "1", 0), ("retry", err, 0),
                                          ("retry", err, 60_000), ("dead", err, 0),
                                          ("requeue", "", 0), ("cancel", "why", 0)):
                where = f"{fields} {kind} {number}"
                await raw.hset(broker.keys(q).job("h2"), mapping=fields)
                codes = await broker.settle(q, [
                    Settlement("h1", jobs["h1"].token, "ok", "1"),
                    Settlement("h2", jobs["h2"].token, kind, payload, number),
                    Settlement("h3", jobs["h3"].token, "ok", "1")], **SETTLE_TTLS)
                assert codes == [SettleCode.APPLIED] * 3, where
                status = await _status(raw, app, "h2")
                assert status in ("succeeded", "queued", "scheduled", "failed", "cancelled"), (
                    f"{where}: the record is gone or unfinished: {status}")
                problems = fsck(await snapshot(raw, app.prefix, q))
                assert not problems, f"{where}: {problems}"
                await restore_all(raw, base)
    await raw.aclose()


async def test_renew_batch_with_a_foreign_typed_record_renews_the_others(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        jobs = await _claim_ids(app, ["r1", "r2", "r3"], lease_ms=5_000)
        await plant(raw, broker.keys(q).job("r2"))
        before = await raw.zscore(broker.keys(q).leases, "r3")
        codes = await broker.renew(q, [(j, jobs[j].token) for j in ("r1", "r2", "r3")], 600_000)
        assert codes == [RenewCode.RENEWED, RenewCode.LOST, RenewCode.RENEWED]
        assert await raw.zscore(broker.keys(q).leases, "r3") > before
    await raw.aclose()


async def test_reap_batch_with_a_foreign_typed_record_reaps_the_others(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        k = broker.keys(q)
        await _claim_ids(app, ["x1", "x2", "x3", "x4"])
        await raw.zadd(k.leases, {j: 1 for j in ("x1", "x2", "x3", "x4")}, xx=True)  # expired
        await plant(raw, k.job("x2"))
        await raw.hset(k.job("x3"), mapping={"lx": "x", "md": "nan", "p": "nan"})
        requeued, dead = await broker.reap(q, limit=10, max_deliveries=3,
                                           dead_letter_ttl_ms=60_000)
        assert (requeued, dead) == (3, 0)
        assert [await _status(raw, app, j) for j in ("x1", "x3", "x4")] == ["queued"] * 3
        snap = await _check(raw, app)
        assert snap.stats["malformed_record"] == 1 and not snap.leases
    await raw.aclose()


async def test_replay_batch_with_a_foreign_typed_record_replays_the_others(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        jobs = await _claim_ids(app, ["d1", "d2", "d3"])
        await broker.settle(q, [Settlement(j, jobs[j].token, "dead", "{}") for j in jobs],
                            **SETTLE_TTLS)
        await plant(raw, broker.keys(q).job("d2"))
        await raw.hset(broker.keys(q).job("d3"), "p", "nan")
        assert await broker.replay(q, ["d1", "d2", "d3"]) == 2
        assert [await _status(raw, app, j) for j in ("d1", "d3")] == ["queued"] * 2
        snap = await _check(raw, app)
        assert snap.stats["malformed_record"] == 1 and not snap.dead
    await raw.aclose()


async def test_claim_batch_with_a_hostile_delivery_count_leases_every_job(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        for job_id in ("c1", "c2", "c3"):
            await broker.enqueue(q, job_id, "add", '{"args": [1]}')
        await raw.hset(broker.keys(q).job("c2"), mapping={"dlv": "x", "tk": "nan"})
        async with broker.blocking_client("t") as lane:
            claimed, _ = await broker.claim(lane, q, 3, 600_000, "w1")
        assert sorted(j.id for j in claimed) == ["c1", "c2", "c3"]
        await _check(raw, app)
    await raw.aclose()


async def test_purge_waiting_with_a_foreign_typed_record_purges_the_others(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        for job_id in ("p1", "p2", "p3"):
            await broker.enqueue(q, job_id, "add", '{"args": [1]}')
        await plant(raw, broker.keys(q).job("p2"))
        admin = BrokerAdmin(broker.lane, app.prefix)
        assert await admin.purge(q, "waiting", result_ttl_ms=60_000) == 2
        assert [await _status(raw, app, j) for j in ("p1", "p3")] == ["cancelled"] * 2
        await _check(raw, app)
    await raw.aclose()


async def test_workflow_cancel_with_a_foreign_typed_member_cancels_the_others(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        await create_workflow(broker, q, "wfx", "group", 3, False, "",
                              [MemberJob(f"wfx.{i}", "add", '{"args": [1]}', 0, "")
                               for i in range(3)], [])
        await plant(raw, broker.keys(q).job("wfx.1"))
        await cancel_workflow(broker, q, "wfx", "stop", 60_000)
        assert [await _status(raw, app, j) for j in ("wfx.0", "wfx.2")] == ["cancelled"] * 2
    await raw.aclose()


@pytest.mark.parametrize("damaged", ["wf", "wfc"])
async def test_settle_of_a_member_whose_workflow_keys_are_foreign_settles_the_batch(
    make_app: Callable[..., aioqueue.App], redis_url: str, damaged: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        await create_workflow(broker, q, "wfy", "chain", 3, False, "",
                              [MemberJob("wfy.0", "add", '{"args": [1]}', 0, "")],
                              [f"wfy.{i}\x1fadd\x1f\x1f{{}}\x1f0\x1f" for i in (1, 2)])
        await broker.enqueue(q, "o1", "add", '{"args": [1]}')
        async with broker.blocking_client("t") as lane:
            claimed, _ = await broker.claim(lane, q, 2, 600_000, "w1")
        jobs = {j.id: j for j in claimed}
        member = jobs["wfy.0"]
        await plant(raw, f"{broker.keys(q).base}{damaged}:wfy")
        codes = await broker.settle(q, [Settlement("wfy.0", member.token, "ok", "1"),
                                        Settlement("o1", jobs["o1"].token, "ok", "1")],
                                    **SETTLE_TTLS)
        assert codes == [SettleCode.APPLIED] * 2
        assert [await _status(raw, app, j) for j in ("wfy.0", "o1")] == ["succeeded"] * 2
        await _check(raw, app)
    await raw.aclose()


async def test_a_running_job_whose_record_turns_foreign_does_not_stop_the_worker(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = make_app()
    release = anyio.Event()

    @app.task(name="hold")
    async def hold(ctx: aioqueue.JobContext, n: int) -> int:
        await release.wait()
        return n

    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app, running(app) as supervisor:
        k = app.broker.keys(app.default_queue)
        spoiled, kept = await hold.enqueue(1), await hold.enqueue(2)

        async def both_running() -> bool:
            return all([await j.status() is aioqueue.JobStatus.ACTIVE for j in (spoiled, kept)])

        await wait_until(both_running, 30, what="both jobs running")
        await plant(raw, k.job(spoiled.id))
        # a renewal sees the foreign record first (and reports the lease lost)
        await wait_until(lambda: supervisor.activity().counters["renew_calls"] >= 2, 30,
                         what="renewals")
        release.set()
        assert await kept.result(timeout=30) == 2
        assert await (await hold.enqueue(3)).result(timeout=30) == 3

        async def accounted() -> bool:
            return await raw.zscore(k.leases, spoiled.id) is None

        await wait_until(accounted, 30, what="the foreign job's lease dropped")
        snap = await _check(raw, app)
        assert snap.stats["malformed_record"] == 1
    await raw.aclose()


async def test_a_settle_the_script_refuses_for_one_job_settles_the_rest_and_goes_on(
    make_app: Callable[..., aioqueue.App], redis_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        jobs = await _claim_ids(app, ["e1", "e2", "e3"])
        state = WorkerState(broker, app.worker_settings, "w1", [q], RunningJobs(10))
        settler = Settler(state, result_ttl_ms=60_000, dead_letter_ttl_ms=60_000)
        runs = {j: state.running.add(jobs[j], time.monotonic() + 600) for j in jobs}
        settler.submit(runs["e1"], Settlement("e1", jobs["e1"].token, "ok", "1"))
        # a negative retry delay: the script refuses it (a bug's settlement)
        settler.submit(runs["e2"], Settlement("e2", jobs["e2"].token, "retry", "{}", -1))
        settler.submit(runs["e3"], Settlement("e3", jobs["e3"].token, "ok", "1"))
        with caplog.at_level(logging.ERROR, logger="aioqueue.worker"):
            await settler.step()  # does not raise
        assert [await _status(raw, app, j) for j in ("e1", "e2", "e3")] == [
            "succeeded", "active", "succeeded"]
        assert state.running.free == 10 and not settler.pending[q]
        assert state.counters["succeeded"] == 2 and state.counters["settle_refused"] == 1
        assert any("e2" in r.getMessage() for r in caplog.records)
        # its lease is left to the reaper, which hands it back when it expires
        assert await raw.zscore(broker.keys(q).leases, "e2") is not None
        await _check(raw, app)
    await raw.aclose()


async def test_a_unique_key_whose_holder_record_is_foreign_is_free(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        unique = UniqueKey("u1")
        code, first = await enqueue_flow(broker, q, "u-first", "add", '{"args": [1]}',
                                         unique=unique)
        assert code is EnqueueCode.QUEUED
        await plant(raw, broker.keys(q).job(first))
        # not a job of ours holds the key: a new enqueue takes it (it used to be refused
        # with WRONGTYPE for as long as the key lived)
        code, second = await enqueue_flow(broker, q, "u-second", "add", '{"args": [1]}',
                                          unique=unique)
        assert (code, second) == (EnqueueCode.QUEUED, "u-second")
    await raw.aclose()


async def test_a_claimed_job_with_hostile_number_fields_runs_and_the_worker_goes_on(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        await broker.enqueue(q, "n1", "add", "[[5],{}]")
        await raw.hset(broker.keys(q).job("n1"), mapping={
            "att": "nan", "mt": "x", "to": "1e3", "et": "inf", "rt": "-"})
        # the claim's reply carries them: parsing it used to stop the worker (ValueError)
        async with running(app):
            async def ended() -> bool:
                return await _status(raw, app, "n1") == "succeeded"

            await wait_until(ended, 30, what="the job with hostile fields succeeded")
            await broker.enqueue(q, "n2", "add", "[[6],{}]")

            async def second() -> bool:
                return await _status(raw, app, "n2") == "succeeded"

            await wait_until(second, 30, what="the worker still runs jobs")
        await _check(raw, app)
    await raw.aclose()


async def test_a_repeated_claim_with_a_foreign_typed_record_answers_the_others(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        for job_id in ("v1", "v2", "v3"):
            await broker.enqueue(q, job_id, "add", '{"args": [1]}')
        async with broker.blocking_client("t") as lane:
            first, _ = await broker.claim(lane, q, 3, 600_000, "w1", reservation_id="rsv1")
            await plant(raw, broker.keys(q).job("v2"))
            # the first reply was lost: the same reservation asks again
            again, _ = await broker.claim(lane, q, 3, 600_000, "w1", reservation_id="rsv1")
        assert sorted(j.id for j in first) == ["v1", "v2", "v3"]
        assert sorted(j.id for j in again) == ["v1", "v3"]
    await raw.aclose()


async def test_cancel_of_a_foreign_typed_record_answers_not_found(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        await broker.enqueue(q, "k1", "add", '{"args": [1]}')
        await plant(raw, broker.keys(q).job("k1"))
        before = await dump_all(raw)
        assert await broker.cancel(q, "k1", "stop", 60_000) is aioqueue.CancelOutcome.NOT_FOUND
        assert await dump_all(raw) == before
    await raw.aclose()


@pytest.mark.parametrize("script", ["reap", "replay", "cancel", "workflow_cancel"])
async def test_a_fixed_queue_key_of_another_type_is_refused_before_the_first_write(
    make_app: Callable[..., aioqueue.App], redis_url: str, script: str,
) -> None:
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        k = broker.keys(q)
        jobs = await _claim_ids(app, ["f1", "f2"])
        await broker.settle(q, [Settlement("f1", jobs["f1"].token, "dead", "{}")],
                            **SETTLE_TTLS)
        await raw.zadd(k.leases, {"f2": 1}, xx=True)  # expired
        await create_workflow(broker, q, "wfz", "group", 2, False, "",
                              [MemberJob(f"wfz.{i}", "add", '{"args": [1]}', 0, "")
                               for i in range(2)], [])
        # the key the script writes last, after its others: the per-job writes came first
        last = {"reap": k.dead, "replay": k.stats, "cancel": k.stats,
                "workflow_cancel": k.stats}[script]
        await plant(raw, last)
        before = await dump_all(raw)
        call = {
            "reap": lambda: broker.reap(q, limit=10, max_deliveries=1,
                                        dead_letter_ttl_ms=60_000),
            "replay": lambda: broker.replay(q, ["f1"]),
            "cancel": lambda: broker.cancel(q, "wfz.1", "x", 60_000),
            "workflow_cancel": lambda: cancel_workflow(broker, q, "wfz", "x", 60_000),
        }[script]
        with pytest.raises(aioqueue.WrongKeyType):
            await call()
        assert await dump_all(raw) == before, "failed half-way"
    await raw.aclose()


async def test_a_wrong_slot_guard_key_is_refused_before_any_write(
    make_app: Callable[..., aioqueue.App], redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """settle, reap and cancel check the slot guard they declare (it must be
    the queue's never-written ``guard`` key, or it guards nothing)."""
    app = make_app()
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        await broker.enqueue(q, "j1", "add", '{"args": [1]}')
        async with broker.blocking_client("t") as lane:
            (job,), _ = await broker.claim(lane, q, 1, 600_000, "w1")
        base = await dump_all(raw)
        monkeypatch.setattr(QueueKeys, "guard", property(lambda self: self.base + "stats"))
        calls = [
            lambda: broker.settle(q, [Settlement(job.id, job.token, "ok", "1")],
                                  default_result_ttl_ms=60_000, dead_letter_ttl_ms=60_000),
            lambda: broker.reap(q, limit=10, max_deliveries=3, dead_letter_ttl_ms=60_000),
            lambda: broker.cancel(q, job.id, "stop", 60_000),
        ]
        for call in calls:
            with pytest.raises(aioqueue.RedisCommandError, match="slot guard"):
                await call()
            assert await dump_all(raw) == base
    await raw.aclose()


@pytest.mark.parametrize("key", ["leases", "delayed", "dead", "prios", "wake", "stats"])
async def test_settle_with_a_queue_key_of_another_type_changes_nothing(
    make_app: Callable[..., aioqueue.App], redis_url: str, key: str,
) -> None:
    """A queue-wide key the batch writes (after other jobs' writes, before)
    turned into another type: the whole settle is refused and nothing is
    written, so every job keeps its lease and the reaper still sees it."""
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        k = broker.keys(q)
        jobs = await _claim_ids(app, ["q1", "q2", "q3", "q4"])
        keys = {"leases": k.leases, "delayed": k.delayed, "dead": k.dead, "prios": k.prios,
                "wake": k.wake, "stats": k.stats}
        await plant(raw, keys[key], "string" if key != "wake" else "zset")
        before = await dump_all(raw)
        err = '{"type": "E", "message": "m"}'
        batch = [Settlement("q1", jobs["q1"].token, "ok", "1"),
                 Settlement("q2", jobs["q2"].token, "retry", err, 5_000),
                 Settlement("q3", jobs["q3"].token, "dead", err),
                 Settlement("q4", jobs["q4"].token, "requeue")]
        with pytest.raises(aioqueue.WrongKeyType):
            await broker.settle(q, batch, **SETTLE_TTLS)
        assert await dump_all(raw) == before, "failed half-way"
    await raw.aclose()


async def test_settle_of_successes_checks_key_types_once_per_call(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    """The common batch (plain successes) pays its type checks once per call,
    whatever its size: the same TYPE count for 1 job and for 10."""
    app = _adder(make_app)
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with app:
        broker, q = app.broker, app.default_queue
        jobs = await _claim_ids(app, [f"o{i}" for i in range(11)])
        counts = []
        for ids in (["o0"], [f"o{i}" for i in range(1, 11)]):
            before = await commandstat_calls(raw, "type")
            codes = await broker.settle(q, [Settlement(j, jobs[j].token, "ok", "1") for j in ids],
                                        **SETTLE_TTLS)
            assert codes == [SettleCode.APPLIED] * len(ids)
            counts.append(await commandstat_calls(raw, "type") - before)
        assert counts[0] == counts[1] <= 3, counts  # leases, stats, the minute's counters
    await raw.aclose()
