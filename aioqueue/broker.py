"""The Redis side of aioqueue: connections, start-up checks and one typed
method per Lua script.

Two kinds of connection, on purpose (see the README, "Redis design"):

* a pool for short commands and scripts, with an explicit, bounded retry
  policy; every script is idempotent or fenced, so a retried call is harmless;
* one dedicated connection per fetcher for the blocking wait, with no socket
  timeout and no automatic retry: redis-py would otherwise cut a long blocking
  read at ``socket_timeout`` and silently send it again.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from .backoff import COMMAND_RETRY
from .connection import redact, translate_errors
from .errors import (
    ConfigurationError,
    DurabilityUnconfirmed,
    RedisAuthError,
    RedisPermissionDenied,
    RedisUnavailable,
    UnsupportedServer,
)
from .flow import FlowKeys
from .keys import QueueKeys
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

MIN_SERVER_VERSION = (6, 2, 0)


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


@dataclass(frozen=True, slots=True)
class ServerInfo:
    name: str
    version: str


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


def _parse_version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


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


class Broker:
    """Owns the connection pool and speaks the queue protocol."""

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
        self.url = url
        self.wait_replicas = wait_replicas
        self.wait_fsync = wait_fsync
        self.wait_timeout_ms = max(1, round(wait_timeout_s * 1000))
        self.prefix = prefix
        self.socket_timeout_s = socket_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._redis_options = dict(redis_options or {})
        # a blocking pool: when all connections are busy a caller waits for one
        # instead of failing, so 10,000 concurrent waiters share a bounded pool
        pool = BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(ExponentialWithJitterBackoff(cap=COMMAND_RETRY.cap_s,
                                                     base=COMMAND_RETRY.base_s), retries),
            max_connections=max_connections,
            timeout=None,
            **self._redis_options,
        )
        self.client: Redis = Redis(connection_pool=pool)
        # the hot path: scripts and record reads, on raw connections
        self._lane_options = dict(
            decode_responses=True, socket_timeout=None,
            socket_connect_timeout=connect_timeout_s, socket_keepalive=True,
            **self._redis_options,
        )
        lane_pool = ConnectionPool.from_url(url, **self._lane_options)
        self.lane = CommandLane(lane_pool.make_connection, size=max_connections,
                                timeout_s=socket_timeout_s, retries=retries)
        self.scripts = ScriptRunner()
        self._keys: dict[str, QueueKeys] = {}
        self.server: ServerInfo | None = None

    def keys(self, queue: str) -> QueueKeys:
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys(self.prefix, queue)
        return keys

    @contextlib.asynccontextmanager
    async def blocking_client(self, name: str) -> AsyncIterator[CommandLane]:
        """A dedicated connection for one fetcher: its blocking waits have no
        socket timeout (the wait itself is bounded) and nothing is retried
        behind the caller's back. Replies stay bytes: a claim decodes them
        itself, so a record that is not UTF-8 cannot crash the fetcher."""
        options = {**self._lane_options, "client_name": name, "decode_responses": False}
        lane = CommandLane(ConnectionPool.from_url(self.url, **options).make_connection,
                           size=1, timeout_s=self.socket_timeout_s, retries=0)
        try:
            yield lane
        finally:
            with anyio.CancelScope(shield=True):
                await lane.close()

    async def close(self) -> None:
        await self.lane.close()
        await self.client.aclose()
        await self.client.connection_pool.disconnect()

    # -- start-up -------------------------------------------------------------

    async def check_server(self) -> ServerInfo:
        """Refuse a server that cannot run aioqueue, naming what was found."""
        where = redact(self.url)
        try:
            with translate_errors():
                hello = await self.client.execute_command(  # type: ignore[no-untyped-call]
                    "HELLO")
        except RedisUnavailable as exc:
            hint = ""
            cause = str(exc.__cause__ or exc)
            if self.url.startswith("rediss://"):
                hint = (" (TLS handshake failed? the server may not speak TLS on this port, "
                        "or its certificate is not trusted: check ssl_ca_certs)")
            elif "closed" in cause or "reset" in cause.lower():
                hint = " (if the server expects TLS, use a rediss:// URL)"
            raise RedisUnavailable(f"cannot reach Redis at {where}: {cause}{hint}") from exc
        except RedisAuthError as exc:
            raise RedisAuthError(
                f"Redis at {where} refused the credentials (check the username and "
                f"password in the URL or redis_options): {exc.__cause__ or exc}") from exc
        except RedisPermissionDenied as exc:
            raise RedisPermissionDenied(
                f"Redis at {where} denied HELLO to this user: {exc.__cause__ or exc}") from exc
        info = _as_mapping(hello)
        name = str(info.get("server", "redis"))
        version = str(info.get("version", "0"))
        self.server = ServerInfo(name, version)
        if _parse_version(version) < MIN_SERVER_VERSION:
            raise UnsupportedServer(
                f"{name} {version} is too old: aioqueue needs Redis >= 6.2 or Valkey "
                "(ZADD GT, LPOP with a count)"
            )
        if name in ("valkey", "redis") and _parse_version(version) >= (7, 0, 0):
            self.scripts.use_script_flags()
        return self.server

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

    async def mark_tick(self, queue: str, schedule_name: str, tick_ms: int,
                        *, only_new: bool) -> None:
        """Record a tick as handled without a job (first start, or skipped)."""
        flag = "NX" if only_new else "GT"
        with translate_errors(self.keys(queue).base):
            await self.lane.execute("ZADD", self.keys(queue).schedules, flag, tick_ms,
                                    schedule_name)

    async def last_ticks(self, queue: str) -> dict[str, int]:
        with translate_errors(self.keys(queue).base):
            raw: Any = await self.lane.execute(
                "ZRANGE", self.keys(queue).schedules, 0, -1, "WITHSCORES")
        if raw and isinstance(raw[0], list):  # RESP3 pairs
            return {str(m): int(float(sc)) for m, sc in raw}
        return {str(raw[i]): int(float(raw[i + 1])) for i in range(0, len(raw), 2)}

    async def forget_schedules(self, queue: str, names: Sequence[str]) -> None:
        if names:
            with translate_errors(self.keys(queue).base):
                await self.lane.execute("ZREM", self.keys(queue).schedules, *names)

    async def server_time_ms(self) -> int:
        with translate_errors():
            sec, usec = await self.lane.execute("TIME")
        return int(sec) * 1000 + int(usec) // 1000

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

    async def dead_ids(self, queue: str, *, offset: int = 0, limit: int = 100) -> list[str]:
        """Dead-lettered ids, oldest first."""
        with translate_errors(self.keys(queue).base):
            ids: Any = await self.client.zrange(
                self.keys(queue).dead, offset, offset + limit - 1 if limit > 0 else -1)
        return list(ids)

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

    # -- reads ----------------------------------------------------------------

    async def job_fields(self, queue: str, job_id: str, *fields: str) -> list[str | None]:
        with translate_errors(self.keys(queue).base):
            values: Any = await self.lane.execute("HMGET", self.keys(queue).job(job_id), *fields)
        return list(values)

    async def job_record(self, queue: str, job_id: str) -> dict[str, str]:
        with translate_errors(self.keys(queue).base):
            record: Any = await self.lane.execute("HGETALL", self.keys(queue).job(job_id))
        if isinstance(record, list):  # RESP2: flat pairs
            return {record[i]: record[i + 1] for i in range(0, len(record) - 1, 2)}
        return dict(record)

    async def counts(self, queue: str) -> dict[str, int]:
        """How many jobs are waiting, running, scheduled and dead in a queue."""
        k = self.keys(queue)
        with translate_errors(k.base):
            levels: Any = await self.client.zrange(k.prios, 0, -1)
            async with self.client.pipeline(transaction=False) as pipe:
                for level in levels:
                    pipe.llen(k.wait(int(level)))
                pipe.zcard(k.leases)
                pipe.zcard(k.delayed)
                pipe.zcard(k.dead)
                res = await pipe.execute()
        waiting = sum(int(x) for x in res[: len(levels)])
        running, scheduled, dead = (int(x) for x in res[len(levels):])
        return {"waiting": waiting, "running": running, "scheduled": scheduled, "dead": dead}

    async def stats(self, queue: str) -> dict[str, int]:
        with translate_errors(self.keys(queue).base):
            raw: Any = await self.client.hgetall(
                self.keys(queue).stats)
        return {k: int(v) for k, v in raw.items()}


def _exec_results(replies: list[Any], count: int) -> list[Any]:
    """The replies of the calls inside MULTI ... EXEC: EXEC's array, or (the
    transaction was refused) the refusal in place of every call."""
    executed = replies[count + 1]
    if isinstance(executed, list):
        return executed
    queued = [r for r in replies[1:count + 1] if isinstance(r, Exception)]
    return [queued[0] if queued else executed] * count


def _as_mapping(reply: Any) -> dict[str, Any]:
    if isinstance(reply, dict):
        return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in reply.items()}
    if isinstance(reply, list):
        return {str(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}
    return {}

