"""Dead letters: list them, and give them fresh attempts (under their own id
or as new jobs). Operator paths; the App's methods call these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .prepared import new_job_id
from .record import Field, JobInfo, JobStatus, copied_overrides, parse_info

if TYPE_CHECKING:
    from .broker import Broker


async def dead_letters(broker: Broker, queue: str, *, limit: int, offset: int) -> list[JobInfo]:
    """Dead-lettered jobs of ``queue``, oldest first."""
    infos = []
    for job_id in await broker.dead_ids(queue, offset=offset, limit=limit):
        record = await broker.job_record(queue, job_id)
        if record:
            infos.append(parse_info(job_id, queue, record))
    return infos


async def _is_dead(broker: Broker, queue: str, job_id: str) -> bool:
    (status,) = await broker.job_fields(queue, job_id, Field.STATUS)
    return status == JobStatus.FAILED


async def _dead_now(broker: Broker, queue: str, job_ids: Sequence[str] | None) -> list[str]:
    """The given ids that are dead-lettered, or every dead id when None: a
    snapshot, so a job that dies again during a replay is not replayed again."""
    ids = list(job_ids) if job_ids is not None else await broker.dead_ids(queue, limit=0)
    return [job_id for job_id in dict.fromkeys(ids) if await _is_dead(broker, queue, job_id)]


async def replay_in_place(broker: Broker, queue: str,
                          job_ids: Sequence[str] | None) -> list[str]:
    """Give dead jobs fresh attempts under their own ids (the given ones, or
    every job dead now). Ids that are not dead-lettered are skipped.
    Returns the ids that will run."""
    dead = await _dead_now(broker, queue, job_ids)
    if dead:  # replay.lua also skips an id that left the dead letters meanwhile
        await broker.replay(queue, dead)
    return dead


async def replay_as_new(broker: Broker, queue: str,
                        job_ids: Sequence[str] | None) -> dict[str, str]:
    """Enqueue dead jobs (the given ones, or every job dead now) again as new
    jobs with new ids, and purge the dead ones. Ids that are not
    dead-lettered are skipped. Returns {old id: new id}."""
    replayed: dict[str, str] = {}
    for old in await _dead_now(broker, queue, job_ids):
        record = await broker.job_record(queue, old)
        if record.get(Field.STATUS) != JobStatus.FAILED:
            continue
        fresh = new_job_id()
        await broker.enqueue(queue, fresh, record.get(Field.TASK, ""),
                             record.get(Field.ARGS, "{}"),
                             priority=int(record.get(Field.PRIORITY, "0")),
                             extra=copied_overrides(record))
        await broker.purge_dead(queue, [old])
        replayed[old] = fresh
    return replayed
