"""The execution-history checker: a pure function over what the workers
recorded outside Redis, what the producers were told, and the final Redis
state.

Inputs:

* ``acked``: ids whose ``enqueue`` returned (the producer was told "yes");
* ``unknown``: ids whose ``enqueue`` raised (outcome unknown: may or may not
  exist; Jepsen's *info*);
* the per-worker history files that ``tests.fault_app`` appends
  ``start|end <job id> <token> <pid>`` lines to (:func:`read_history`);
* a :class:`Snapshot` of one queue's keys (:func:`snapshot`).

:func:`check` returns a :class:`Report`; :meth:`Report.assert_ok` raises with
every violation listed. The invariants:

* **no loss**: every acked id has a record that ended (succeeded, failed,
  cancelled) -- or, with ``drained=False``, is at least still tracked;
* **no phantom**: every executed id was enqueued (acked or unknown);
* **one completion**: a succeeded job's accepted settle (``lt`` = token+kind)
  names a token that ran, and the queue's ``succeeded`` counter equals the
  number of succeeded records (no second accepted completion anywhere);
* **no token ran twice**: a (job, token) pair starts once (a repeated claim
  returns the same token to the same worker only when the first reply was
  lost, so it is never started twice);
* **explained duplicates**: every extra delivery of a job (a second token
  that started) is covered by the lease expiries and hand-backs the queue
  counted (``lease_expired`` + ``requeued`` + ``retried``), and every late
  outcome is refused and counted (``stale_settle``);
* **drained**: nothing waiting, leased or scheduled;
* **fsck**: every id in a wait list, ``leases``, ``delayed`` or ``dead`` has a
  record whose status matches that structure, and appears in exactly one of
  them (once); every record is in the structure its status names (finished
  ones in none); every non-empty wait list's level is in ``prios``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioqueue.record import FINAL_STATUSES, Field

TERMINAL = FINAL_STATUSES
# a queue's keys besides job records and wait lists (README, "Redis design")
STRUCTURE_KEYS = ("prios", "leases", "delayed", "dead", "stats", "wake", "reaper", "schedules",
                  "paused", "limits", "limiter", "held",
                  # concurrency groups (lua/includes/groups.lua)
                  "gring", "gpark", "grunning", "glimits", "gstate")
# keys named by an id (claim reservations, workflows) or a caller's unique key;
# m:<minute> per-minute counters and the pause flag are queue keys of their own
ID_KEY_PREFIXES = ("rsv:", "wf:", "wfm:", "wfc:", "wfr:", "uniq:", "m:", "paused", "gtat:")


@dataclass(frozen=True, slots=True)
class Run:
    kind: str  # start | end
    job_id: str
    token: str
    pid: int


def read_history(directory: Path) -> list[Run]:
    """Every line of every ``<pid>.log`` in ``directory``."""
    runs: list[Run] = []
    for path in sorted(directory.glob("*.log")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 4:  # a torn last line of a killed worker cannot happen
                raise AssertionError(f"malformed history line in {path}: {line!r}")
            runs.append(Run(parts[0], parts[1], parts[2], int(parts[3])))
    return runs


@dataclass
class Snapshot:
    """One queue's keys, read at the end of a test."""

    records: dict[str, dict[str, str]]
    waiting: dict[int, list[str]]
    prios: list[str]
    leases: list[str]
    delayed: list[str]
    dead: list[str]
    stats: dict[str, int]
    other_keys: list[str] = field(default_factory=list)
    held: dict[str, list[str]] = field(default_factory=dict)
    """ids held back by a task's rate limit (``held:<task>``), by task"""
    group_waiting: dict[str, list[str]] = field(default_factory=dict)
    """ids waiting in a concurrency group (``gw:<group>``), by group"""
    group_slots: dict[str, list[str]] = field(default_factory=dict)
    """ids holding a group's slots (``grun:<group>``), by group"""
    group_ring: list[str] = field(default_factory=list)
    """groups in ``gring`` and ``gpark`` (those with waiting jobs)"""
    foreign: dict[str, str] = field(default_factory=dict)
    """ids whose ``job:<id>`` key holds another type (not a record of ours), by type"""


def _text(value: Any) -> str:
    """Text of a reply part; bytes that are not UTF-8 stay visible as escapes."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _texts(values: Any) -> list[str]:
    return [_text(v) for v in values]


async def snapshot(client: Any, prefix: str, queue: str) -> Snapshot:
    """Read every key of ``queue`` (``client``: a redis.asyncio client, with
    or without ``decode_responses``; without, keys and values that are not
    UTF-8 are read too, shown with escapes)."""
    base = f"{prefix}:{{{queue}}}:"
    records: dict[str, dict[str, str]] = {}
    waiting: dict[int, list[str]] = {}
    held: dict[str, list[str]] = {}
    group_waiting: dict[str, list[str]] = {}
    group_slots: dict[str, list[str]] = {}
    other: list[str] = []
    foreign: dict[str, str] = {}
    async for key in client.scan_iter(match=base.replace("{", "\\{").replace("}", "\\}") + "*",
                                      count=1000):
        name = _text(key)[len(base):]
        if name.startswith("job:"):
            kind = _text(await client.type(key))
            if kind != "hash":  # written by something else: not a record of ours
                if kind != "none":
                    foreign[name[4:]] = kind
                continue
            record = await client.hgetall(key)
            records[name[4:]] = {_text(k): _text(v) for k, v in record.items()}
        elif name.startswith("wait:"):
            waiting[int(name[5:])] = _texts(await client.lrange(key, 0, -1))
        elif name.startswith("held:"):  # held back by a rate limit: still queued
            held[name[5:]] = _texts(await client.lrange(key, 0, -1))
        elif name.startswith("gw:"):  # waiting in a concurrency group: still queued
            group_waiting[name[3:]] = _texts(await client.lrange(key, 0, -1))
        elif name.startswith("grun:"):
            group_slots[name[5:]] = _texts(await client.smembers(key))
        elif name not in STRUCTURE_KEYS:
            other.append(name)
    stats = {_text(k): int(v) for k, v in (await client.hgetall(base + "stats")).items()}
    return Snapshot(
        records=records, waiting=waiting,
        prios=_texts(await client.zrange(base + "prios", 0, -1)),
        leases=_texts(await client.zrange(base + "leases", 0, -1)),
        delayed=_texts(await client.zrange(base + "delayed", 0, -1)),
        dead=_texts(await client.zrange(base + "dead", 0, -1)),
        stats=stats, other_keys=other, held=held, group_waiting=group_waiting,
        group_slots=group_slots, foreign=foreign,
        group_ring=_texts(await client.zrange(base + "gring", 0, -1))
        + _texts(await client.zrange(base + "gpark", 0, -1)),
    )


def fsck(snap: Snapshot) -> list[str]:
    """Key-space consistency problems (empty when consistent)."""
    problems: list[str] = []
    where: dict[str, list[str]] = collections.defaultdict(list)
    for level, ids in snap.waiting.items():
        if ids and str(level) not in snap.prios:
            problems.append(f"wait:{level} holds {len(ids)} id(s) but level {level} "
                            "is not in prios (nobody would claim them)")
        for job_id in ids:
            record = snap.records.get(job_id)
            if record is not None and record.get(Field.STATUS) == "cancelled":
                continue  # cancelled while it waited: a leftover id that claim drops
            where[job_id].append(f"wait:{level}")
    for task, ids in snap.held.items():
        for job_id in ids:
            record = snap.records.get(job_id)
            if record is not None and record.get(Field.STATUS) != "queued":
                continue  # ended (cancelled) while held: a leftover id that claim drops
            where[job_id].append(f"wait (held:{task})")
    problems += _group_problems(snap, where)
    for name, ids in (("leases", snap.leases), ("delayed", snap.delayed), ("dead", snap.dead)):
        for job_id in ids:
            where[job_id].append(name)
    expected = {"queued": "wait", "active": "leases", "scheduled": "delayed", "failed": "dead"}
    for job_id, places in where.items():
        if len(places) > 1:
            problems.append(f"{job_id} is in {len(places)} places: {places}")
        record = snap.records.get(job_id)
        if record is None:
            kind = snap.foreign.get(job_id)
            problems.append(f"{job_id} is in {places} but has no record" + (
                f" (its key holds a {kind})" if kind else ""))
            continue
        status = record.get(Field.STATUS)
        want = expected.get(status or "")
        if want is None or not places[0].startswith(want):
            problems.append(f"{job_id} has status {status!r} but is in {places[0]}")
    for job_id, record in snap.records.items():
        status = record.get(Field.STATUS)
        if status is None or Field.TASK not in record or Field.ARGS not in record:
            problems.append(f"record {job_id} lacks fields: {sorted(record)}")
            continue
        if status in expected and job_id not in where:
            problems.append(f"{job_id} has status {status!r} but is in no structure (stuck)")
        if status in ("succeeded", "cancelled") and job_id in where:
            problems.append(f"{job_id} is {status} but still in {where[job_id]}")
    if snap.other_keys:
        unknown = [k for k in snap.other_keys if not k.startswith(ID_KEY_PREFIXES)]
        if unknown:
            problems.append(f"unexpected keys: {unknown}")
    for name, value in snap.stats.items():
        if value < 0:
            problems.append(f"counter {name} is negative: {value}")
    return problems


def _group_problems(snap: Snapshot, where: dict[str, list[str]]) -> list[str]:
    """Concurrency groups: a group with waiting ids is in the ring (or
    parked), or nobody would claim them; a slot is held by a leased job."""
    problems: list[str] = []
    for gid, ids in snap.group_waiting.items():
        if ids and gid not in snap.group_ring:
            problems.append(f"gw:{gid!r} holds {len(ids)} id(s) but the group is neither in "
                            "gring nor in gpark (nobody would claim them)")
        for job_id in ids:
            record = snap.records.get(job_id)
            if record is not None and record.get(Field.STATUS) != "queued":
                continue  # ended while it waited: a leftover id that claim drops
            where[job_id].append(f"wait (gw:{gid!r})")
    leased = set(snap.leases)
    for gid, ids in snap.group_slots.items():
        for job_id in ids:
            if job_id not in leased:
                problems.append(f"grun:{gid!r} holds {job_id} but it has no lease (a leaked slot)")
    return problems


@dataclass
class Report:
    lost: list[str] = field(default_factory=list)
    phantoms: list[str] = field(default_factory=list)
    double_token: list[tuple[str, str]] = field(default_factory=list)
    bad_completion: list[str] = field(default_factory=list)
    not_drained: list[str] = field(default_factory=list)
    fsck: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    duplicates: int = 0
    """Extra deliveries that started (a job started under more than one token)."""
    duplicate_jobs: int = 0
    late_ends: int = 0
    """Runs that ended under a token other than the accepted one."""
    starts: int = 0
    jobs: int = 0
    recovered: int = 0
    """Unknown-outcome enqueues that exist after all."""

    @property
    def ok(self) -> bool:
        return not (self.lost or self.phantoms or self.double_token or self.bad_completion
                    or self.not_drained or self.fsck or self.unexplained)

    def assert_ok(self) -> None:
        if not self.ok:
            raise AssertionError("history check failed:\n" + self.describe())

    def describe(self) -> str:
        lines = []
        for name in ("lost", "phantoms", "double_token", "bad_completion", "not_drained",
                     "fsck", "unexplained"):
            items = getattr(self, name)
            if items:
                lines.append(f"  {name} ({len(items)}): {items[:10]}")
        lines.append(f"  jobs={self.jobs} starts={self.starts} duplicates={self.duplicates} "
                     f"late_ends={self.late_ends} recovered={self.recovered}")
        return "\n".join(lines)


def check(
    acked: Iterable[str],
    runs: Iterable[Run],
    snap: Snapshot,
    *,
    unknown: Iterable[str] = (),
    drained: bool = True,
    workers_killed: bool = False,
) -> Report:
    """Check the invariants (see the module docstring).

    :param drained: the queue must be empty and every acked job finished.
    :param workers_killed: a worker may have died between a run's end and its
        settle, so a superseded run need not have produced a stale settle.
    """
    acked = set(acked)
    unknown = set(unknown) - acked
    runs = list(runs)
    report = Report(jobs=len(acked))
    records = snap.records

    # no loss
    for job_id in sorted(acked):
        record = records.get(job_id)
        if record is None:
            report.lost.append(job_id)
        elif drained and record.get(Field.STATUS) not in TERMINAL:
            report.not_drained.append(f"{job_id}: {record.get('st')}")
    report.recovered = sum(1 for j in unknown if j in records)

    # no phantom; tokens
    tokens: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    ends: dict[str, list[str]] = collections.defaultdict(list)
    for run in runs:
        if run.job_id not in acked and run.job_id not in unknown:
            report.phantoms.append(run.job_id)
        if run.kind == "start":
            report.starts += 1
            tokens[run.job_id][run.token] += 1
        else:
            ends[run.job_id].append(run.token)
    for job_id, counter in tokens.items():
        for token, n in counter.items():
            if n > 1:
                report.double_token.append((job_id, token))
        if len(counter) > 1:
            report.duplicate_jobs += 1
            report.duplicates += len(counter) - 1

    # one accepted completion per job
    succeeded = 0
    for job_id, record in records.items():
        if record.get(Field.STATUS) != "succeeded":
            continue
        succeeded += 1
        accepted = record.get(Field.LAST_SETTLE, "")
        if not accepted.endswith("ok"):
            report.bad_completion.append(f"{job_id}: accepted settle {accepted!r}")
            continue
        token = accepted[:-2]
        if job_id in tokens and token not in ends.get(job_id, []):
            report.bad_completion.append(
                f"{job_id}: accepted token {token} never finished a run "
                f"(ends: {ends.get(job_id)})")
        report.late_ends += sum(1 for t in ends.get(job_id, []) if t != token)
    if snap.stats.get("succeeded", 0) != succeeded:
        report.bad_completion.append(
            f"stats.succeeded={snap.stats.get('succeeded', 0)} but {succeeded} succeeded "
            "record(s): a job was completed more than once (or a record vanished)")

    # duplicates explained by counted lease expiries / hand-backs
    handbacks = sum(snap.stats.get(k, 0) for k in ("lease_expired", "requeued", "retried"))
    if report.duplicates > handbacks:
        report.unexplained.append(
            f"{report.duplicates} extra deliveries but only {handbacks} lease expiries, "
            "hand-backs and retries counted")
    if not workers_killed and report.late_ends > snap.stats.get("stale_settle", 0):
        report.unexplained.append(
            f"{report.late_ends} runs ended under a superseded token but only "
            f"{snap.stats.get('stale_settle', 0)} stale settles were counted")

    # drained and consistent
    if drained:
        for level, ids in snap.waiting.items():
            if ids:
                report.not_drained.append(f"wait:{level} holds {len(ids)}")
        if snap.leases:
            report.not_drained.append(f"leases hold {snap.leases[:5]}")
        if snap.delayed:
            report.not_drained.append(f"delayed holds {snap.delayed[:5]}")
    report.fsck = fsck(snap)
    return report
