"""The queue protocol: one typed method per Lua script.

The broker layer is this module, :mod:`aioqueue.broker_reads` (reads and
small commands), :mod:`aioqueue.connection` (sockets, server check, error
translation), :mod:`aioqueue.lane`, :mod:`aioqueue.scripts` and
:mod:`aioqueue.listener`; nothing else imports redis. Every method here
raises aioqueue errors only.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors

from .broker_reads import BrokerReads
from .connection import ServerInfo, translate_errors
from .connection_open import connect
from .errors import ConfigurationError, DurabilityUnconfirmed
from .flow import FlowKeys
from .lane import CommandLane
from .record import cjson_safe
from .script_codes import (
    CancelOutcome,
    EnqueueCode,
    ProgressCode,
    RenewCode,
    SettleCode,
)
from .scripts import RELOAD_ATTEMPTS, ScriptRunner

# translate_errors: re-exported for broker-layer modules written before it
# moved to aioqueue.connection
__all__ = ["Broker", "ClaimedJob", "ServerInfo", "Settlement", "translate_errors"]


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job reserved by a worker: its lease is held under ``token``."""

    queue: str
    id: str
    token: str
    task: str
    args: str
    attempt: int
    max_tries: int | None
    timeout_ms: int | None
    enqueued_ms: int
    result_ttl_ms: int | None


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of one job, sent to ``settle.lua``."""

    job_id: str
    token: str
    kind: str  # ok | retry | dead | requeue | cancel
    payload: str = ""
    number: int = 0


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _payload(value: Any) -> str:
    """Stored arguments: bytes that are not UTF-8 (a binary pickle, say) are
    replaced by text that fails JSON parsing, so the job is dead-lettered as
    InvalidPayload instead of crashing the reply parser (and the worker)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return "<stored arguments are not UTF-8 text>"
    return "" if value is None else str(value)


class Broker(BrokerReads):
    """Speaks the queue protocol over one :class:`~aioqueue.connection.Connection`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        socket_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 50,
        retries: int = 3,
        redis_options: Mapping[str, Any] | None = None,
        wait_replicas: int = 0,
        wait_fsync: bool = False,
        wait_timeout_s: float = 1.0,
    ) -> None:
        super().__init__(
            connect(url, socket_timeout_s=socket_timeout_s,
                    connect_timeout_s=connect_timeout_s, max_connections=max_connections,
                    retries=retries, redis_options=redis_options),
            prefix=prefix)
        self.wait_replicas = wait_replicas
        self.wait_fsync = wait_fsync
        self.wait_timeout_ms = max(1, round(wait_timeout_s * 1000))
        self.scripts = ScriptRunner()

    @property
    def server(self) -> ServerInfo | None:
        return self.connection.server

    @contextlib.asynccontextmanager
    async def blocking_client(self, name: str) -> AsyncIterator[CommandLane]:
        """A dedicated connection for one fetcher's waits and claims."""
        async with self.connection.blocking_lane(name) as lane:
            yield lane

    async def close(self) -> None:
        await self.connection.close()

    async def check_server(self) -> ServerInfo:
        """Refuse a server that cannot run aioqueue, naming what was found."""
        server = await self.connection.check_server()
        if server.script_flags:
            self.scripts.use_script_flags()
        return server

    # -- the queue protocol ---------------------------------------------------

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
        k = self.keys(queue)
        extra_field = "\x1f".join(f"{n}\x1f{v}" for n, v in (extra or {}).items())
        keys = [k.job(job_id), k.wait(priority), k.prios, k.wake, k.delayed]
        args: list[Any] = [job_id, task, args_json, priority, delay_ms,
                           "" if at_ms is None else at_ms, extra_field]
        if self.durable:
            command = ("EVALSHA", self.scripts.scripts["enqueue"].sha, len(keys), *keys, *args)
            (result,) = await self.run_pipelined(k.base, "enqueue", [command], [job_id])
            return EnqueueCode(int(result))
        with translate_errors(k.base):
            result = await self.scripts.run(self.lane, "enqueue", keys, args)
        return EnqueueCode(int(result))

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
                        extra: Mapping[str, str | int] | None = None) -> bool:
        """Enqueue a schedule's tick unless a supervisor already fired it (or
        a later tick). True if this call enqueued it."""
        k = self.keys(queue)
        extra_field = "\x1f".join(f"{n}\x1f{v}" for n, v in (extra or {}).items())
        with translate_errors(k.base):
            result = await self.scripts.run(
                self.lane, "enqueue",
                [k.job(job_id), k.wait(priority), k.prios, k.wake, k.delayed, k.schedules],
                [job_id, task, args_json, priority, 0, "", extra_field, schedule_name, tick_ms],
            )
        return EnqueueCode(int(result)).created

    async def enqueue_many(
        self, queue: str, jobs: Sequence[tuple[str, str, str, int, int, int | None,
                                                Mapping[str, str | int] | None]]
    ) -> list[EnqueueCode]:
        """Enqueue a chunk in one round trip: jobs sharing their options go
        through ``enqueue_batch.lua`` 250 at a time, in one MULTI/EXEC, so a
        server at ``maxmemory`` writes all of the chunk or none of it
        (``RedisOutOfMemory``). Enqueue is idempotent by id: sending the same
        chunk again (after a NOSCRIPT, a refusal or a lost reply) adds each
        job once."""
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
        return [EnqueueCode(int(code)) for reply in replies for code in reply]

    def _claim_call(self, queue: str, count: int, lease_ms: int, worker_id: str,
                    reservation_id: str | None, promote_limit: int
                    ) -> tuple[list[str], list[Any]]:
        k = self.keys(queue)
        fk = FlowKeys(k)
        return ([k.prios, k.leases, k.wake, k.stats, k.delayed,
                 k.reservation(reservation_id or secrets.token_hex(8)), k.paused,
                 fk.limits, fk.limiter, fk.held],
                [k.base, count, lease_ms, worker_id, promote_limit])

    def _claimed(self, queue: str, raw: Any) -> tuple[list[ClaimedJob], int]:
        jobs = []
        for i in range(1, len(raw), 9):
            jid, token, task, args, att, mt, to, et, rt = raw[i:i + 9]
            jobs.append(ClaimedJob(
                queue=queue, id=_text(jid), token=_text(token), task=_text(task),
                args=_payload(args),
                attempt=int(att), max_tries=_opt_int(mt), timeout_ms=_opt_int(to),
                enqueued_ms=int(et or 0), result_ttl_ms=_opt_int(rt),
            ))
        return jobs, int(raw[0])

    async def claim(
        self,
        client: CommandLane,
        queue: str,
        count: int,
        lease_ms: int,
        worker_id: str,
        reservation_id: str | None = None,
        promote_limit: int = 1000,
    ) -> tuple[list[ClaimedJob], int]:
        """Promote due jobs, then lease up to ``count``; also returns the ms
        until the next scheduled job (-1 if none)."""
        keys, args = self._claim_call(queue, count, lease_ms, worker_id, reservation_id,
                                      promote_limit)
        with translate_errors(self.keys(queue).base):
            raw = await self.scripts.run(client, "claim", keys, args)
        return self._claimed(queue, raw)

    async def claim_after_wait(
        self,
        client: CommandLane,
        queue: str,
        wait_s: float,
        count: int,
        lease_ms: int,
        worker_id: str,
        reservation_id: str | None = None,
        promote_limit: int = 1000,
    ) -> tuple[list[ClaimedJob], int]:
        """Block on the queue's wake-up list for up to ``wait_s``, then claim:
        both commands are sent together, so the server runs the claim the
        moment the wait ends and an idle worker gets a new job one round
        trip after its enqueue, not two."""
        keys, args = self._claim_call(queue, count, lease_ms, worker_id, reservation_id,
                                      promote_limit)
        k = self.keys(queue)
        script = self.scripts.scripts["claim"]
        with translate_errors(k.base):
            woken, raw = await client.execute_many(
                [("BLPOP", k.wake, wait_s),
                 ("EVALSHA", script.sha, len(keys), *keys, *args)],
                timeout_s=wait_s + self.socket_timeout_s)
            if isinstance(woken, Exception):
                raise woken  # refused (NOPERM, BUSY...): or the fetcher would spin
            if isinstance(raw, redis_errors.NoScriptError):
                raw = await self.scripts.run(client, "claim", keys, args)
            elif isinstance(raw, Exception):
                raise raw
        return self._claimed(queue, raw)

    async def settle(
        self,
        queue: str,
        settlements: Sequence[Settlement],
        *,
        default_result_ttl_ms: int,
        dead_letter_ttl_ms: int,
    ) -> list[SettleCode]:
        k = self.keys(queue)
        args: list[Any] = [k.base, default_result_ttl_ms, dead_letter_ttl_ms]
        for s in settlements:
            args += [s.job_id, s.token, s.kind, s.payload, s.number]
        keys = [k.leases, k.delayed, k.dead, k.prios, k.wake, k.stats,
                *(k.job(s.job_id) for s in settlements)]
        with translate_errors(k.base):
            codes = await self.scripts.run(self.lane, "settle", keys, args)
        return [SettleCode(int(c)) for c in codes]

    async def renew(
        self, queue: str, leases: Sequence[tuple[str, str]], lease_ms: int
    ) -> list[RenewCode]:
        k = self.keys(queue)
        args: list[Any] = [lease_ms]
        for job_id, token in leases:
            args += [job_id, token]
        keys = [k.leases, *(k.job(job_id) for job_id, _ in leases)]
        with translate_errors(k.base):
            codes = await self.scripts.run(self.lane, "renew", keys, args)
        return [RenewCode(int(c)) for c in codes]

    async def reap(
        self, queue: str, *, limit: int, max_deliveries: int, dead_letter_ttl_ms: int,
        result_ttl_ms: int = 86_400_000, stall_ms: int = 3_000, hold_ms: int = 10_000,
    ) -> tuple[int, int]:
        """Re-deliver or dead-letter jobs whose lease expired. After a gap of
        more than ``stall_ms`` since the last reap, reap nothing for ``hold_ms``
        (live workers renew first)."""
        k = self.keys(queue)
        with translate_errors(k.base):
            requeued, dead = await self.scripts.run(
                self.lane, "reap",
                [k.leases, k.dead, k.prios, k.wake, k.stats, k.reaper],
                [k.base, limit, max_deliveries, dead_letter_ttl_ms, result_ttl_ms,
                 stall_ms, hold_ms],
            )
        return int(requeued), int(dead)

    async def progress(self, queue: str, job_id: str, token: str, payload: str) -> bool:
        k = self.keys(queue)
        with translate_errors(k.base):
            code = await self.scripts.run(
                self.lane, "progress", [k.job(job_id)], [k.done_channel(job_id), token, payload])
        return ProgressCode(int(code)) is ProgressCode.RECORDED

    async def cancel(self, queue: str, job_id: str, reason: str,
                     default_result_ttl_ms: int) -> CancelOutcome:
        k = self.keys(queue)
        with translate_errors(k.base):
            outcome = await self.scripts.run(
                self.lane, "cancel", [k.job(job_id), k.delayed, k.stats, k.prios, k.wake],
                [k.base, job_id, cjson_safe(reason), default_result_ttl_ms])
        return CancelOutcome(_text(outcome))

    async def replay(self, queue: str, job_ids: Sequence[str]) -> int:
        k = self.keys(queue)
        with translate_errors(k.base):
            count = await self.scripts.run(
                self.lane, "replay", [k.dead, k.prios, k.wake, k.stats, *map(k.job, job_ids)],
                [k.base, *job_ids])
        return int(count)

    async def purge_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Delete dead-lettered jobs (all of them when ``job_ids`` is None)."""
        k = self.keys(queue)
        purged = 0
        while True:
            with translate_errors(k.base):
                count = int(await self.scripts.run(
                    self.lane, "purge", [k.dead],
                    [k.base, *(job_ids if job_ids is not None else ["*"])]))
            purged += count
            if job_ids is not None or count == 0:
                return purged

def _exec_results(replies: list[Any], count: int) -> list[Any]:
    """The replies of the calls inside MULTI ... EXEC: EXEC's array, or (the
    transaction was refused) the refusal in place of every call."""
    executed = replies[count + 1]
    if isinstance(executed, list):
        return executed
    queued = [r for r in replies[1:count + 1] if isinstance(r, Exception)]
    return [queued[0] if queued else executed] * count
