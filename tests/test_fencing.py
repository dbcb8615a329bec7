"""The fencing token grows even when Redis loses writes (an AOF fsynced every
second after a machine crash, a failover): a delivery the server forgot can
never settle over a later one."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import aioqueue
from aioqueue.broker import ClaimedJob, Settlement
from aioqueue.script_codes import SettleCode
from aioqueue.server import ServerProcess

SETTLE_TTLS = {"default_result_ttl_ms": 60_000, "dead_letter_ttl_ms": 60_000}


def restore_directory(server: ServerProcess, saved: Path) -> None:
    server.stop()
    shutil.rmtree(server.directory)
    shutil.copytree(saved, server.directory)
    server.start()


async def claim_one(app: aioqueue.App, worker: str) -> ClaimedJob:
    async with app, app.broker.blocking_client(worker) as lane:
        jobs, _ = await app.broker.claim(lane, app.default_queue, 1, 60_000, worker)
    assert len(jobs) == 1
    return jobs[0]


async def test_stale_delivery_cannot_settle_after_redis_lost_its_claim(
    own_server: ServerProcess, make_app: Callable[..., aioqueue.App], tmp_path: Path,
) -> None:
    def new_app() -> aioqueue.App:
        app = make_app(own_server.url)
        app.task(name="work")(work)
        return app

    async def work(ctx: aioqueue.JobContext) -> int:
        return 1

    app = new_app()
    async with app:
        job_id = (await app.enqueue("work")).id
    own_server.stop()  # a clean copy of the data as it was before the claim
    saved = tmp_path / "before-claim"
    shutil.copytree(own_server.directory, saved)
    own_server.start()

    first = await claim_one(new_app(), "worker-a")
    # the machine crashes and the claim's write is lost: Redis comes back
    # with the data of before the claim, and the job is delivered again
    restore_directory(own_server, saved)
    second = await claim_one(new_app(), "worker-b")
    assert first.id == second.id == job_id
    assert first.token != second.token

    app = new_app()
    async with app:
        broker, q = app.broker, app.default_queue
        stale = await broker.settle(q, [Settlement(job_id, first.token, "ok", "1")], **SETTLE_TTLS)
        assert stale == [SettleCode.STALE]
        applied = await broker.settle(q, [Settlement(job_id, second.token, "ok", "2")],
                                      **SETTLE_TTLS)
        assert applied == [SettleCode.APPLIED]
        assert await app.job(job_id).result(timeout=5) == 2
