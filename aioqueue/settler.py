"""The settler: sends finished jobs' outcomes to Redis, one round trip per
queue for everything that finished meanwhile.

A batch the server refuses with an error reply (a script error, WRONGTYPE)
is sent again one job at a time, once: one bad outcome or record cannot hold
back the others or stop the worker. An outcome refused alone is logged with
its job id and dropped; the job's lease then expires and the reaper hands it
back (or dead-letters it at its delivery limit)."""

from __future__ import annotations

import logging

import anyio

from .broker import Settlement
from .errors import refused_by_server
from .roles import WorkerState, keep_stepping
from .running import RunningJob
from .script_codes import SettleCode

log = logging.getLogger("aioqueue.worker")

_COUNTER = {"ok": "succeeded", "dead": "failed", "retry": "retried",
            "requeue": "requeued", "cancel": "cancelled"}


class Settler:
    """Outcomes wait in :attr:`pending` until :meth:`step` sends them; a job
    keeps its concurrency slot until its outcome is in Redis."""

    def __init__(self, state: WorkerState, *, result_ttl_ms: int, dead_letter_ttl_ms: int
                 ) -> None:
        self.state = state
        self.result_ttl_ms = result_ttl_ms
        self.dead_letter_ttl_ms = dead_letter_ttl_ms
        self.pending: dict[str, list[tuple[RunningJob, Settlement]]] = {}
        self._wakeup = anyio.Event()

    def submit(self, running: RunningJob, settlement: Settlement) -> None:
        running.settling = True
        self.pending.setdefault(running.job.queue, []).append((running, settlement))
        self._wakeup.set()

    async def step(self) -> None:
        """Send every pending outcome (settle is fenced and idempotent, so an
        outcome whose reply was lost is simply sent again). Several queues
        (the shards of a sharded queue, say: one slot, maybe one node each)
        are settled concurrently; the first error is raised once all ended."""
        queues = [queue for queue, items in self.pending.items() if items]
        if len(queues) <= 1:
            for queue in queues:
                await self._settle(queue)
            return
        errors: list[Exception] = []

        async def settle(queue: str) -> None:
            try:
                await self._settle(queue)
            except Exception as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for queue in queues:
                tg.start_soon(settle, queue)
        if errors:
            raise errors[0]

    async def _settle(self, queue: str) -> None:
        items = list(self.pending.get(queue, ()))
        codes: list[SettleCode | Exception]
        try:
            codes = list(await self._send(queue, [st for _, st in items]))
        except Exception as exc:
            if not refused_by_server(exc):
                raise  # transient (or the worker stops): the whole batch is sent again
            codes = await self._one_by_one(queue, [st for _, st in items], exc)
        # outcomes submitted while the call was on its way stay pending
        self.pending[queue] = self.pending[queue][len(items):]
        running_jobs, counters = self.state.running, self.state.counters
        for (running, st), code in zip(items, codes, strict=True):
            if code is SettleCode.APPLIED:  # the usual case, inline: no call per job
                running_jobs.remove(running, notify=False)
                key = _COUNTER.get(st.kind)
                if key:
                    counters[key] += 1
            else:
                self._finished(running, st, code)
        running_jobs.changed()

    async def _send(self, queue: str, settlements: list[Settlement]) -> list[SettleCode]:
        return await self.state.broker.settle(
            queue, settlements, default_result_ttl_ms=self.result_ttl_ms,
            dead_letter_ttl_ms=self.dead_letter_ttl_ms)

    async def _one_by_one(self, queue: str, settlements: list[Settlement], refusal: Exception
                          ) -> list[SettleCode | Exception]:
        """Each outcome of a refused batch alone, once: its code, or the
        server's refusal of it."""
        if len(settlements) == 1:
            return [refusal]
        log.warning("queue %s: the server refused a batch of %d outcomes (%s); sending each "
                    "alone", queue, len(settlements), refusal)
        codes: list[SettleCode | Exception] = []
        for st in settlements:
            try:
                codes += await self._send(queue, [st])
            except Exception as exc:
                if not refused_by_server(exc):
                    raise
                codes.append(exc)
        return codes

    def _finished(self, running: RunningJob, st: Settlement, code: SettleCode | Exception
                  ) -> None:
        self.state.running.remove(running, notify=False)
        counters = self.state.counters
        if isinstance(code, Exception):
            counters["settle_refused"] += 1
            log.error("job %s: the server refused its outcome %r (%s); left to the reaper: its "
                      "lease (token %s) expires and it is handed back or dead-lettered",
                      running.job.id, st.kind, code, running.job.token)
            return
        if code is SettleCode.MALFORMED:
            counters["stale_settle"] += 1
            log.warning("job %s: outcome %r dropped, its record key holds another type of value "
                        "(written by something else); counted as malformed_record",
                        running.job.id, st.kind)
            return
        if code is SettleCode.STALE:
            counters["stale_settle"] += 1
            log.warning("job %s: outcome %r refused, the lease (token %s) is no longer ours "
                        "(it expired and the job was re-delivered)", running.job.id, st.kind,
                        running.job.token)
            return
        key = _COUNTER.get(st.kind)
        if key:
            counters[key] += 1

    async def _next(self) -> float:
        if not any(self.pending.values()):
            await self._wakeup.wait()
        self._wakeup = anyio.Event()
        await self.step()
        return 0.0

    async def run(self) -> None:
        await keep_stepping("settler", self._next, self.state, oom_transient=True)

    def flush_soon(self) -> None:
        self._wakeup.set()
