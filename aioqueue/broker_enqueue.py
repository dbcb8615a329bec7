"""The enqueue side of the queue protocol: ``enqueue``, ``enqueue_many``
(one MULTI/EXEC per chunk), a schedule's tick, and durability mode (WAIT or
WAITAOF on the connection that wrote). Mixed into
:class:`aioqueue.broker.Broker`; errors are aioqueue's only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis import exceptions as redis_errors

from .broker_reads import BrokerReads
from .connection import translate_errors
from .errors import ConfigurationError, DurabilityUnconfirmed
from .script_codes import EnqueueCode, enqueue_code
from .scripts import RELOAD_ATTEMPTS, ScriptRunner


class BrokerEnqueue(BrokerReads):
    """Creating jobs (the scripts are set up by :class:`~aioqueue.broker.Broker`)."""

    scripts: ScriptRunner
    wait_replicas: int
    wait_fsync: bool
    wait_timeout_ms: int

    async def enqueue(
        self,
        queue: str,
        job_id: str,
        task: str,
        args_json: str,
        *,
        priority: int = 0,
        delay_ms: int = 0,
        at_ms: int | None = None,
        extra: Mapping[str, str | int] | None = None,
    ) -> EnqueueCode:
        """Create the job (or find it already there)."""
        k = self.keys(self.route(queue, job_id) if self.shards else queue)
        extra_field = "\x1f".join(f"{n}\x1f{v}" for n, v in (extra or {}).items())
        keys = [k.job(job_id), k.wait(priority), k.prios, k.wake, k.delayed]
        args: list[Any] = [job_id, task, args_json, priority, delay_ms,
                           "" if at_ms is None else at_ms, extra_field]
        if self.durable:
            command = ("EVALSHA", self.scripts.scripts["enqueue"].sha, len(keys), *keys, *args)
            (result,) = await self.run_pipelined(k.base, "enqueue", [command], [job_id])
            return enqueue_code(result)
        with translate_errors(k.base):
            result = await self.scripts.run(self.lane, "enqueue", keys, args)
        return enqueue_code(result)

    def _durability_command(self) -> tuple[Any, ...]:
        if self.wait_fsync:
            return ("WAITAOF", 1, self.wait_replicas, self.wait_timeout_ms)
        return ("WAIT", self.wait_replicas, self.wait_timeout_ms)

    @property
    def durable(self) -> bool:
        return bool(self.wait_replicas or self.wait_fsync)

    async def run_pipelined(self, at: str, script: str, commands: list[tuple[Any, ...]],
                            job_ids: list[str], *, atomic: bool = False) -> list[Any]:
        """Send calls of one idempotent script in one round trip (again after
        a NOSCRIPT), then, in durability mode, WAIT (or WAITAOF) on the same
        connection; an error reply becomes a typed error, and too few
        confirmations raise DurabilityUnconfirmed. ``atomic`` sends them as
        one MULTI/EXEC: the server checks its memory once, before the first
        call, so at ``maxmemory`` either every call writes or none does."""
        tail = [self._durability_command()] if self.durable else []
        body = [("MULTI",), *commands, ("EXEC",)] if atomic else commands
        for _ in range(RELOAD_ATTEMPTS):
            with translate_errors(at):
                replies = await self.lane.execute_many([*body, *tail])
            results = _exec_results(replies, len(commands)) if atomic else replies[:len(commands)]
            if not any(isinstance(r, redis_errors.NoScriptError) for r in results):
                break
            with translate_errors(at):
                await self.scripts.load(self.lane, script)
        for r in results:
            if isinstance(r, Exception):
                with translate_errors(f"{at}, {script}"):
                    raise r
        if self.durable:
            self._check_confirmation(replies[-1], job_ids)
        return results

    def _check_confirmation(self, confirmation: Any, job_ids: list[str]) -> None:
        if isinstance(confirmation, Exception):
            raise ConfigurationError(
                f"the server refused {self._durability_command()[0]} ({confirmation}); "
                "wait_fsync needs Redis >= 7.2 or Valkey with appendonly yes") from confirmation
        if self.wait_fsync:
            local, replicas = (int(x) for x in confirmation)
            ok = local >= 1 and replicas >= self.wait_replicas
            seen = f"{local} local fsync(s), {replicas} replica fsync(s)"
        else:
            ok = int(confirmation) >= self.wait_replicas
            seen = f"{int(confirmation)} replica(s)"
        if not ok:
            raise DurabilityUnconfirmed(
                f"{len(job_ids)} job(s) written but only {seen} confirmed within "
                f"{self.wait_timeout_ms} ms (wanted {self.wait_replicas} replica(s)"
                f"{' and a local fsync' if self.wait_fsync else ''}): outcome unknown on "
                "failover; enqueueing again with the same id is safe", job_ids=job_ids)

    async def fire_tick(self, queue: str, schedule_name: str, tick_ms: int, job_id: str,
                        task: str, args_json: str, priority: int,
                        extra: Mapping[str, str | int] | None = None,
                        group: str | None = None) -> bool:
        """Enqueue a schedule's tick unless a supervisor already fired it (or
        a later tick). True if this call enqueued it. ``group``: the job's
        concurrency group (``flow.group_id``), if its task has them."""
        grouped = ["", "", group] if group else []
        k = self.keys(self.route(queue, job_id))
        extra_field = "\x1f".join(f"{n}\x1f{v}" for n, v in (extra or {}).items())
        with translate_errors(k.base):
            result = await self.scripts.run(
                self.lane, "enqueue",
                [k.job(job_id), k.wait(priority), k.prios, k.wake, k.delayed, k.schedules],
                [job_id, task, args_json, priority, 0, "", extra_field, schedule_name, tick_ms,
                 *grouped],
            )
        return enqueue_code(result).created

    async def enqueue_many(
        self, queue: str, jobs: Sequence[tuple[str, str, str, int, int, int | None,
                                                Mapping[str, str | int] | None]]
    ) -> list[EnqueueCode]:
        """Enqueue a chunk in one round trip: jobs sharing their options go
        through ``enqueue_batch.lua`` 250 at a time, in one MULTI/EXEC, so a
        server at ``maxmemory`` writes all of the chunk or none of it
        (``RedisOutOfMemory``). Enqueue is idempotent by id: sending the same
        chunk again (after a NOSCRIPT, a refusal or a lost reply) adds each
        job once. A sharded queue's chunk is split by shard, one MULTI/EXEC
        per shard: all or nothing per shard, not for the whole chunk."""
        if queue in self.shards:
            return await self._enqueue_many_sharded(queue, jobs)
        k = self.keys(queue)
        batch_sha = self.scripts.scripts["enqueue_batch"].sha
        groups: dict[tuple[int, int, int | None, str], list[tuple[str, str, str]]] = {}
        for job_id, task, args_json, priority, delay_ms, at_ms, extra in jobs:
            extra_field = "\x1f".join(f"{n}\x1f{v}" for n, v in (extra or {}).items())
            groups.setdefault((priority, delay_ms, at_ms, extra_field), []).append(
                (job_id, task, args_json))
        commands: list[tuple[Any, ...]] = []
        for (priority, delay_ms, at_ms, extra_field), members in groups.items():
            for start in range(0, len(members), 250):
                chunk = members[start:start + 250]
                flat = [x for member in chunk for x in member]
                commands.append((
                    "EVALSHA", batch_sha, 4 + len(chunk), k.wait(priority), k.prios, k.wake,
                    k.delayed, *(k.job(member[0]) for member in chunk),
                    priority, delay_ms, "" if at_ms is None else at_ms, extra_field, *flat))
        replies = await self.run_pipelined(k.base, "enqueue_batch", commands,
                                           [j[0] for j in jobs], atomic=True)
        return [enqueue_code(code) for reply in replies for code in reply]


    async def _enqueue_many_sharded(
        self, queue: str, jobs: Sequence[tuple[str, str, str, int, int, int | None,
                                                Mapping[str, str | int] | None]]
    ) -> list[EnqueueCode]:
        by_shard: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            by_shard.setdefault(self.route(queue, job[0]), []).append(i)
        codes: list[EnqueueCode] = [EnqueueCode.EXISTS] * len(jobs)
        for shard, places in by_shard.items():
            replies = await self.enqueue_many(shard, [jobs[i] for i in places])
            for i, code in zip(places, replies, strict=True):
                codes[i] = code
        return codes


def _exec_results(replies: list[Any], count: int) -> list[Any]:
    """The replies of the calls inside MULTI ... EXEC: EXEC's array, or (the
    transaction was refused) the refusal in place of every call."""
    executed = replies[count + 1]
    if isinstance(executed, list):
        return executed
    queued = [r for r in replies[1:count + 1] if isinstance(r, Exception)]
    return [queued[0] if queued else executed] * count
