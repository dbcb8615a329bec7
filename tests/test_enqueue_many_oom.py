"""enqueue_many at a server's maxmemory: ids are fixed before the first write,
each call writes all of its jobs or none, and sending it again duplicates
nothing."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

import aioqueue
from aioqueue.errors import RedisOutOfMemory
from aioqueue.script_codes import EnqueueCode
from aioqueue.server import ServerProcess


async def count_records(admin: aioredis.Redis, prefix: str) -> int:
    return len([k async for k in admin.scan_iter(match=f"{prefix}:*job:*", count=1000)])


async def test_enqueue_many_at_maxmemory_writes_all_of_a_call_or_none(
    own_server: ServerProcess, make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app(own_server.url)

    @app.task(name="fill")
    async def fill(ctx: aioqueue.JobContext, blob: str) -> None:
        return None

    blob = "x" * 1000
    async with app, aioredis.Redis.from_url(own_server.url) as admin:
        await admin.config_set("maxmemory-policy", "noeviction")
        used = int((await admin.info("memory"))["used_memory"])
        await admin.config_set("maxmemory", used + 3_000_000)  # room for ~2,000 of these
        written = 0
        refused = None
        for _ in range(20):
            try:
                await fill.enqueue_many([fill.bind(blob) for _ in range(1000)])
            except RedisOutOfMemory as exc:
                refused = exc
                break
            written += 1000
            assert await count_records(admin, app.prefix) == written
        assert refused is not None, "the server never filled up"
        # the refused call wrote none of its jobs: the caller knows exactly
        assert await count_records(admin, app.prefix) == written
        assert (await app.broker.counts(app.default_queue))["waiting"] == written


async def test_enqueue_many_sent_again_after_a_refusal_adds_each_job_once(
    own_server: ServerProcess, make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app(own_server.url)
    args = '{"args": ["%s"]}' % ("x" * 1000)

    def call(n: int) -> list[tuple[str, str, str, int, int, None, None]]:
        return [(f"c{n}-{i}", "fill", args, 0, 0, None, None) for i in range(1000)]

    async with app, aioredis.Redis.from_url(own_server.url) as admin:
        used = int((await admin.info("memory"))["used_memory"])
        await admin.config_set("maxmemory", used + 3_000_000)
        n = 0
        while True:
            try:
                await app.broker.enqueue_many(app.default_queue, call(n))
            except RedisOutOfMemory:
                break
            n += 1
            assert n < 20, "the server never filled up"
        assert await count_records(admin, app.prefix) == 1000 * n  # none of call n
        await admin.config_set("maxmemory", 0)
        codes = await app.broker.enqueue_many(app.default_queue, call(n))
        assert codes == [EnqueueCode.QUEUED] * 1000
        codes = await app.broker.enqueue_many(app.default_queue, call(n))  # once more
        assert codes == [EnqueueCode.EXISTS] * 1000
        assert await count_records(admin, app.prefix) == 1000 * (n + 1)
        assert (await app.broker.counts(app.default_queue))["waiting"] == 1000 * (n + 1)


async def test_enqueue_many_refused_midway_names_exactly_the_jobs_written(
    own_server: ServerProcess, make_app: Callable[..., aioqueue.App],
) -> None:
    app = make_app(own_server.url)

    @app.task(name="fill")
    async def fill(ctx: aioqueue.JobContext, blob: str) -> None:
        return None

    async with app, aioredis.Redis.from_url(own_server.url) as admin:
        used = int((await admin.info("memory"))["used_memory"])
        await admin.config_set("maxmemory", used + 3_000_000)
        try:
            await fill.enqueue_many([fill.bind("x" * 1000) for _ in range(6000)],
                                    chunk_size=500)
        except RedisOutOfMemory as exc:
            refused = exc
        else:
            raise AssertionError("the server never filled up")
        written, unwritten = refused.written_ids, refused.unwritten_ids
        assert written and unwritten and len(written) + len(unwritten) == 6000
        assert len(written) % 500 == 0  # whole chunks
        assert await count_records(admin, app.prefix) == len(written)
        for job_id in (written[0], written[-1]):
            assert await app.job(job_id).status() is aioqueue.JobStatus.QUEUED
        for job_id in (unwritten[0], unwritten[-1]):
            assert await app.job(job_id).status() is aioqueue.JobStatus.UNKNOWN
