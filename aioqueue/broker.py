"""The queue protocol: one typed method per Lua script.

The broker layer is this module (the worker's scripts),
:mod:`aioqueue.broker_enqueue` (creating jobs, durability mode),
:mod:`aioqueue.broker_reads` (reads and small commands),
:mod:`aioqueue.connection` (sockets, server check, error translation),
:mod:`aioqueue.lane`, :mod:`aioqueue.scripts` and :mod:`aioqueue.listener`;
nothing else imports redis. Every method here raises aioqueue errors only.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, NamedTuple

from redis import exceptions as redis_errors

from .broker_enqueue import BrokerEnqueue
from .connection import ServerInfo, translate_errors
from .connection_open import connect
from .flow import FlowKeys
from .lane import CommandLane
from .record import cjson_safe
from .script_codes import (
    CancelOutcome,
    ProgressCode,
    RenewCode,
    SettleCode,
    renew_code,
    settle_code,
)
from .scripts import ScriptRunner

# translate_errors: re-exported for broker-layer modules written before it
# moved to aioqueue.connection
__all__ = ["Broker", "ClaimedJob", "ServerInfo", "Settlement", "translate_errors"]


class ClaimedJob(NamedTuple):
    """A job reserved by a worker: its lease is held under ``token``.
    (A named tuple: immutable, and made for every claimed job, so it must be
    cheap: a frozen dataclass cost about a microsecond more per job.)"""

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
    trace: str = ""
    """The producer's trace context (``record.Field.TRACE``); '' = none."""


class Settlement(NamedTuple):
    """The outcome of one job, sent to ``settle.lua`` (a named tuple, as
    :class:`ClaimedJob`)."""

    job_id: str
    token: str
    kind: str  # ok | retry | dead | requeue | cancel
    payload: str = ""
    number: int = 0


def _opt_int(value: str | None) -> int | None:
    """A number field of a claimed record; one that holds no integer (written
    by something else) counts as absent, so the job runs with the defaults
    instead of the reply's parsing stopping the worker."""
    try:
        return int(value) if value else None
    except ValueError:
        return None


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


class Broker(BrokerEnqueue):
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

    @contextlib.asynccontextmanager
    async def renewal_client(self, name: str) -> AsyncIterator[CommandLane]:
        """A dedicated connection for the worker's lease renewals, retried as
        the shared lane's commands are: a renewal never waits for a slot
        behind settles and reaps, nor for a new connection's handshake (three
        more round trips) when the shared lane's connections are all busy."""
        async with self.connection.blocking_lane(name) as lane:
            if type(lane) is CommandLane:  # open it now, not on a slow link later
                with contextlib.suppress(Exception):  # (once, bounded: a renewal reconnects)
                    await lane.execute("PING", timeout_s=self.socket_timeout_s)
            lane.retries = self.lane.retries
            yield lane

    async def close(self) -> None:
        await self.connection.close()

    async def check_server(self) -> ServerInfo:
        """Refuse a server that cannot run aioqueue, naming what was found."""
        server = await self.connection.check_server()
        sharded = self.connection.sharded_pubsub
        if server.script_flags or sharded:
            self.scripts.configure(flags=server.script_flags, sharded=sharded)
        return server

    # -- the queue protocol ---------------------------------------------------

    def _claim_call(self, queue: str, count: int, lease_ms: int, worker_id: str,
                    reservation_id: str | None, promote_limit: int
                    ) -> tuple[list[str], list[Any]]:
        fixed = self._claim_keys.get(queue)
        if fixed is None:
            k = self.keys(queue)
            fk = FlowKeys(k)
            fixed = self._claim_keys[queue] = (
                k, [k.prios, k.leases, k.wake, k.stats, k.delayed],
                [k.paused, fk.limits, fk.limiter, fk.held])
        k, head, tail = fixed
        return ([*head, k.reservation(reservation_id or secrets.token_hex(8)), *tail],
                [k.base, count, lease_ms, worker_id, promote_limit])

    def _claimed(self, queue: str, raw: Any) -> tuple[list[ClaimedJob], int]:
        jobs = []
        for i in range(1, len(raw), 10):
            jid, token, task, args, att, mt, to, et, rt, tc = raw[i:i + 10]
            if type(jid) is bytes and type(token) is bytes and type(task) is bytes \
                    and type(args) is bytes:
                # the fetcher's lane answers bytes: decoded here without a
                # call per field (what _text and _payload do)
                jid = jid.decode("utf-8", "replace")
                token = token.decode("utf-8", "replace")
                task = task.decode("utf-8", "replace")
                try:
                    args = args.decode("utf-8")
                except UnicodeDecodeError:
                    args = _payload(args)
            else:
                jid, token, task, args = _text(jid), _text(token), _text(task), _payload(args)
            try:  # the usual record: every number field holds an integer or nothing
                numbers = ((int(att) if att else 0) or 1, int(mt) if mt else None,
                           int(to) if to else None, int(et) if et else 0,
                           int(rt) if rt else None)
            except ValueError:
                numbers = (_opt_int(att) or 1, _opt_int(mt), _opt_int(to), _opt_int(et) or 0,
                           _opt_int(rt))
            jobs.append(ClaimedJob(
                queue, jid, token, task, args, *numbers, _text(tc) if tc else "",
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
        keys = [k.leases, k.delayed, k.dead, k.prios, k.wake, k.stats, k.guard,
                *k.jobs([s.job_id for s in settlements])]
        with translate_errors(k.base):
            codes = await self.scripts.run(self.lane, "settle", keys, args)
        return settle_code.many(codes)

    async def renew(
        self, queue: str, leases: Sequence[tuple[str, str]], lease_ms: int,
        client: CommandLane | None = None,
    ) -> list[RenewCode]:
        k = self.keys(queue)
        args: list[Any] = [lease_ms]
        for job_id, token in leases:
            args += [job_id, token]
        keys = [k.leases, *(k.job(job_id) for job_id, _ in leases)]
        with translate_errors(k.base):
            codes = await self.scripts.run(client or self.lane, "renew", keys, args)
        return [renew_code(c) for c in codes]

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
                [k.leases, k.dead, k.prios, k.wake, k.stats, k.reaper, k.guard],
                [k.base, limit, max_deliveries, dead_letter_ttl_ms, result_ttl_ms,
                 stall_ms, hold_ms],
            )
        return int(requeued), int(dead)

    async def progress(self, queue: str, job_id: str, token: str, payload: str) -> bool:
        k = self.keys(self.route(queue, job_id))
        with translate_errors(k.base):
            code = await self.scripts.run(
                self.lane, "progress", [k.job(job_id)], [k.done_channel(job_id), token, payload])
        return ProgressCode(int(code)) is ProgressCode.RECORDED

    async def cancel(self, queue: str, job_id: str, reason: str,
                     default_result_ttl_ms: int) -> CancelOutcome:
        k = self.keys(self.route(queue, job_id))
        with translate_errors(k.base):
            outcome = await self.scripts.run(
                self.lane, "cancel", [k.job(job_id), k.delayed, k.stats, k.prios, k.wake,
                                       k.guard],
                [k.base, job_id, cjson_safe(reason), default_result_ttl_ms])
        return CancelOutcome(_text(outcome))

    def by_shard(self, queue: str, job_ids: Sequence[str]) -> dict[str, list[str]]:
        """``job_ids`` grouped by the queue (or shard) that holds each."""
        groups: dict[str, list[str]] = {}
        for job_id in job_ids:
            groups.setdefault(self.route(queue, job_id), []).append(job_id)
        return groups

    async def replay(self, queue: str, job_ids: Sequence[str]) -> int:
        if queue in self.shards:
            return sum([await self.replay(shard, ids)
                        for shard, ids in self.by_shard(queue, job_ids).items()])
        k = self.keys(queue)
        with translate_errors(k.base):
            count = await self.scripts.run(
                self.lane, "replay", [k.dead, k.prios, k.wake, k.stats, k.guard,
                                       *map(k.job, job_ids)],
                [k.base, *job_ids])
        return int(count)

    async def purge_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Delete dead-lettered jobs (all of them when ``job_ids`` is None)."""
        if queue in self.shards:
            groups = (dict.fromkeys(self.shard_queues(queue)) if job_ids is None
                      else self.by_shard(queue, job_ids))
            return sum([await self.purge_dead(shard, ids) for shard, ids in groups.items()])
        k = self.keys(queue)
        purged = 0
        while True:
            with translate_errors(k.base):
                count = int(await self.scripts.run(
                    self.lane, "purge", [k.dead, k.guard],
                    [k.base, *(job_ids if job_ids is not None else ["*"])]))
            purged += count
            if job_ids is not None or count == 0:
                return purged
