"""Per-key concurrency groups (#13 item 2), one process: the claim script's
decisions seen through the broker (claim, settle, reap, cancel), the task
API, runtime limits and what operators see. The multi-process guarantees
are in test_flow_groups_processes.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis.asyncio

import aioqueue
from aioqueue.broker import ClaimedJob, Settlement
from aioqueue.broker_admin import BrokerAdmin
from aioqueue.broker_groups import ConcurrencyLimits
from aioqueue.errors import ConfigurationError
from aioqueue.flow import group_id

from .harness.checker import fsck, snapshot

pytestmark = pytest.mark.anyio

SETTLE = {"default_result_ttl_ms": 60_000, "dead_letter_ttl_ms": 60_000}


def _app(make_app: Callable[..., aioqueue.App], limit: int = 2) -> aioqueue.App:
    app = make_app(queue="groups")

    @app.task(name="export", concurrency_key=lambda customer, **_: customer,
              max_concurrency=limit)
    async def export(customer: str, n: int) -> int:
        return n

    @app.task(name="plain")
    async def plain(n: int) -> int:
        return n

    return app


async def _claim(app: aioqueue.App, want: int, lease_ms: int = 60_000) -> list[ClaimedJob]:
    async with app.broker.blocking_client("t") as lane:
        claimed, _ = await app.broker.claim(lane, "groups", want, lease_ms, "w1")
    return list(claimed)


def _customers(jobs: list[ClaimedJob]) -> list[str]:
    return [j.args.split('"customer":"')[1].split('"')[0] for j in jobs]


async def _settle(app: aioqueue.App, jobs: list[ClaimedJob]) -> None:
    await app.broker.settle("groups", [Settlement(j.id, j.token, "ok", "1") for j in jobs],
                            **SETTLE)


def _raw(url: str) -> Any:
    """A plain client of the test's server (a cluster client on a cluster)."""
    if url.startswith("redis+cluster://"):
        return redis.asyncio.RedisCluster.from_url("redis://" + url.split("://", 1)[1])
    return redis.asyncio.Redis.from_url(url)


async def _consistent(app: aioqueue.App, redis_url: str) -> None:
    client = _raw(redis_url)
    try:
        problems = fsck(await snapshot(client, app.prefix, "groups"))
    finally:
        await client.aclose()
    assert not problems, problems


async def test_at_most_n_run_per_key_and_a_settle_frees_a_slot(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    app = _app(make_app, limit=2)
    async with app:
        export = app.tasks["export"]
        for n in range(5):
            await export.enqueue("a", n)
        first = await _claim(app, 10)
        assert _customers(first) == ["a", "a"]
        assert await _claim(app, 10) == []  # held back: stays waiting, not failed
        assert (await app.broker.counts("groups"))["waiting"] == 3
        await _settle(app, first[:1])
        nxt = await _claim(app, 10)
        assert len(nxt) == 1 and nxt[0].id not in {j.id for j in first}
        await _consistent(app, redis_url)


async def test_keys_are_served_round_robin_not_in_arrival_order(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    """A key with a backlog enqueued first cannot starve a later key: the
    claim takes one job per key per turn."""
    app = _app(make_app, limit=100)
    async with app:
        export = app.tasks["export"]
        await export.enqueue_many([export.bind("big", n) for n in range(50)])
        await export.enqueue("small", 0)
        await export.enqueue("other", 0)
        order = _customers(await _claim(app, 1)) + _customers(await _claim(app, 1)) + \
            _customers(await _claim(app, 1)) + _customers(await _claim(app, 1))
        assert order == ["big", "small", "other", "big"]
        await _consistent(app, redis_url)


async def test_grouped_and_plain_jobs_share_the_claims(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = _app(make_app, limit=100)
    async with app:
        export, plain = app.tasks["export"], app.tasks["plain"]
        await export.enqueue_many([export.bind("big", n) for n in range(20)])
        await plain.enqueue_many([plain.bind(n) for n in range(20)])
        tasks = [j.task for _ in range(10) for j in await _claim(app, 1)]
        assert tasks.count("export") == 5 and tasks.count("plain") == 5
        both = await _claim(app, 4)
        assert sorted(j.task for j in both) == ["export", "export", "plain", "plain"]


async def test_an_expired_lease_frees_the_slot_and_the_job_runs_again(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    app = _app(make_app, limit=1)
    async with app:
        export = app.tasks["export"]
        held = await export.enqueue("a", 1)
        await export.enqueue("a", 2)
        (first,) = await _claim(app, 5, lease_ms=50)
        assert first.id == held.id
        assert await _claim(app, 5) == []
        await anyio_sleep(0.1)
        assert await app.broker.reap("groups", limit=10, max_deliveries=5,
                                     dead_letter_ttl_ms=60_000) == (1, 0)
        again = await _claim(app, 5)
        assert [j.id for j in again] == [held.id]  # handed back first in its key
        await _consistent(app, redis_url)


async def test_a_dead_letter_and_a_cancelled_waiting_job_free_their_place(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    app = _app(make_app, limit=1)
    async with app:
        export = app.tasks["export"]
        await export.enqueue("a", 1)
        gone = await export.enqueue("a", 2)
        last = await export.enqueue("a", 3)
        (first,) = await _claim(app, 5)
        assert await gone.cancel() is not None
        await app.broker.settle("groups", [Settlement(first.id, first.token, "dead", "{}")],
                                **SETTLE)
        assert [j.id for j in await _claim(app, 5)] == [last.id]
        await _consistent(app, redis_url)


async def test_a_leaked_slot_is_freed_when_the_parked_key_is_looked_at_again(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    """A slot whose holder has no lease any more (its record purged by
    hand, say) is freed by the claim's safety net, one lease later."""
    app = _app(make_app, limit=1)
    async with app:
        export = app.tasks["export"]
        await export.enqueue("a", 1)
        waiting = await export.enqueue("a", 2)
        (first,) = await _claim(app, 5, lease_ms=50)
        assert await _claim(app, 5, lease_ms=50) == []
        client = _raw(redis_url)
        base = f"{app.prefix}:{{groups}}:"
        await client.zrem(base + "leases", first.id)
        await client.delete(base + "job:" + first.id)
        await client.aclose()
        await anyio_sleep(0.1)
        assert [j.id for j in await _claim(app, 5)] == [waiting.id]


async def test_limits_change_at_runtime_for_a_task_and_for_one_key(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = _app(make_app, limit=1)
    async with app:
        export = app.tasks["export"]
        for key in ("a", "b"):
            for n in range(4):
                await export.enqueue(key, n)
        assert sorted(_customers(await _claim(app, 10))) == ["a", "b"]
        limits = ConcurrencyLimits(app.broker.lane, app.prefix)
        await limits.set_concurrency("groups", "export", 2)
        assert sorted(_customers(await _claim(app, 10))) == ["a", "b"]
        await limits.set_concurrency("groups", "export", 3, key="b")
        assert _customers(await _claim(app, 10)) == ["b"]
        (declared,) = await limits.concurrency_limits("groups")
        assert (declared.declared, declared.override, declared.effective) == (1, 2, 2)
        rows = {r.key: r for r in await limits.groups("groups")}
        assert (rows["a"].running, rows["a"].waiting, rows["a"].limit) == (2, 2, 2)
        assert (rows["b"].running, rows["b"].waiting, rows["b"].limit) == (3, 1, 3)
        assert rows["a"].at_limit and rows["b"].at_limit and rows["b"].override == 3
        await limits.clear_concurrency("groups", "export")
        await limits.clear_concurrency("groups", "export", key="b")
        assert {r.key: r.limit for r in await limits.groups("groups")} == {"a": 1, "b": 1}


async def test_the_key_comes_from_the_validated_arguments_or_the_call(
        make_app: Callable[..., aioqueue.App]) -> None:
    app = make_app(queue="groups")

    @app.task(name="export", concurrency_key=lambda customer, **_: customer, max_concurrency=1)
    async def export(customer: int, n: int) -> int:
        return n

    @app.task(name="whole", max_concurrency=1)
    async def whole(n: int) -> int:
        return n

    async with app:
        job = await export.enqueue("7", 1)  # validated to the int 7: key '7'
        fields = await app.broker.job_fields("groups", job.id, "g")
        assert fields == [group_id("export", "7")]
        job = await export.options(concurrency_key="vip").enqueue(8, 1)
        assert await app.broker.job_fields("groups", job.id, "g") == [group_id("export", "vip")]
        job = await whole.enqueue(1)
        assert await app.broker.job_fields("groups", job.id, "g") == [group_id("whole", "")]
        with pytest.raises(ConfigurationError):
            app.tasks["whole"].options(concurrency_key="")
    with pytest.raises(ConfigurationError):
        app.task(name="bad", concurrency_key=lambda n: n)(_noop)
    with pytest.raises(ConfigurationError):
        app.task(name="bad2", max_concurrency=0)(_noop)


async def _noop(n: int) -> int:
    return n


async def _claim_commands(app: aioqueue.App, client: Any) -> dict[str, int]:
    """The commands (name -> calls) one claim of one plain job issues."""
    await app.tasks["plain"].enqueue(1)
    await client.config_resetstat()
    assert len(await _claim(app, 1)) == 1
    stats: dict[str, Any] = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()
            if not any(word in name for word in ("config", "client", "hello", "script", "eval"))}


async def test_a_plain_claim_issues_the_same_commands_with_groups_declared(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    """A queue whose tasks declare max_concurrency, with no grouped job
    waiting, claims with exactly the commands of a queue without groups:
    the common path is not slowed."""
    client = _raw(redis_url)
    without = make_app(queue="groups")

    @without.task(name="plain")
    async def plain(n: int) -> int:
        return n

    async with without:
        before = await _claim_commands(without, client)
    await client.flushall()
    with_groups = _app(make_app, limit=2)
    async with with_groups:
        after = await _claim_commands(with_groups, client)
    await client.aclose()
    assert after == before


async def anyio_sleep(seconds: float) -> None:
    await anyio.sleep(seconds)


async def test_an_operators_purge_reaches_the_jobs_waiting_in_groups(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    app = _app(make_app, limit=1)
    async with app:
        export, plain = app.tasks["export"], app.tasks["plain"]
        for key in ("a", "b", "c"):
            for n in range(3):
                await export.enqueue(key, n)
        await plain.enqueue(1)
        await _claim(app, 1)  # one runs: its key parks with 2 waiting
        admin = BrokerAdmin(app.broker.lane, app.prefix)
        assert await admin.purge("groups", "waiting", result_ttl_ms=60_000, batch=4) == 9
        assert (await app.broker.counts("groups"))["waiting"] == 0
        assert await _claim(app, 5) == []
        await _consistent(app, redis_url)


async def test_each_key_has_its_own_rate_limit_changeable_at_runtime(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    """key_rate_limit="2/s": one start per key per 0.5 s, each key on its own
    limiter; an idle worker is told when the next key's token comes."""
    app = make_app(queue="groups")

    @app.task(name="call", concurrency_key=lambda customer, **_: customer,
              key_rate_limit="2/s")
    async def call(customer: str, n: int) -> int:
        return n

    async with app:
        for key in ("a", "b"):
            for n in range(3):
                await call.enqueue(key, n)
        assert sorted(_customers(await _claim(app, 10))) == ["a", "b"]
        async with app.broker.blocking_client("t") as lane:
            claimed, next_due_ms = await app.broker.claim(lane, "groups", 10, 60_000, "w1")
        assert claimed == [] and 400 <= next_due_ms <= 500  # slept, not polled
        await anyio.sleep(next_due_ms / 1000 + 0.02)
        assert sorted(_customers(await _claim(app, 10))) == ["a", "b"]
        limits = ConcurrencyLimits(app.broker.lane, app.prefix)
        await limits.set_key_rate("groups", "call", aioqueue.RateLimit(100, 1.0, burst=5))
        assert await _claim(app, 10) == []  # cuts the old wait back to one new interval
        await anyio.sleep(0.03)
        assert sorted(_customers(await _claim(app, 10))) == ["a", "b"]
        (row,) = await limits.concurrency_limits("groups")
        assert str(row.key_rate_declared) == "2/s" and str(row.key_rate_effective) == \
            "100/s (burst 5)" and row.effective is None
        await limits.clear_key_rate("groups", "call")
        (row,) = await limits.concurrency_limits("groups")
        assert row.key_rate_override is None and str(row.key_rate_effective) == "2/s"
        await _consistent(app, redis_url)


async def test_a_schedules_ticks_run_under_their_tasks_limit(
        make_app: Callable[..., aioqueue.App], redis_url: str) -> None:
    """A periodic job of a task with max_concurrency=1 never overlaps the
    previous tick's run; a key function gets the schedule's arguments."""
    app = make_app(queue="groups")

    @app.task(name="sync", concurrency_key=lambda shop, **_: shop, max_concurrency=1)
    async def sync(shop: str) -> None:
        return None

    @app.task(name="nightly", max_concurrency=1)
    async def nightly() -> None:
        return None

    shop_sync = app.schedule(sync, every=60, args=("acme",))
    night = app.schedule(nightly, every=60)
    assert shop_sync.job(60_000).group == group_id("sync", "acme")
    async with app:
        for tick in (60_000, 120_000):
            job = night.job(tick)
            assert job.group == group_id("nightly", "")
            assert await app.broker.fire_tick("groups", night.name, tick, job.job_id, job.task,
                                              job.payload, job.priority, job.fields, job.group)
        assert [j.id for j in await _claim(app, 10)] == [night.job_id(60_000)]
        await _consistent(app, redis_url)
