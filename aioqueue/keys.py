"""Redis key layout.

Every key of one queue starts with ``<prefix>:{<queue>}:``. The braces are a
Redis Cluster hash tag: all keys of a queue live in one slot, so each Lua
script touches one slot and stays cluster-safe. The prefix isolates apps that
share a server.

=====================  ======  ===========================================
key                    type    holds
=====================  ======  ===========================================
``job:<id>``           hash    the job record (fields below)
``wait:<priority>``    list    ids ready to run at that priority, FIFO
``prios``              zset    priority levels with waiting ids (score -p)
``wake``               list    tokens that wake idle fetchers (capped at 8)
``leases``             zset    running ids, score = lease deadline (ms)
``delayed``            zset    scheduled ids, score = due time (ms)
``dead``               zset    dead-lettered ids, score = time dead (ms)
``stats``              hash    counters (succeeded, failed, stale_settle…)
``reaper``             hash    last reap time and stall hold (no storm after a freeze)
``schedules``          zset    periodic schedules, score = last fired tick (ms)
``wf:<id>``            hash    a workflow: kind, status, counts, result/error
``wfr:<id>``           hash    group member results by index
``wfc:<id>``           list    remaining chain steps
``wfm:<id>``           list    member job ids
``rsv:<reservation>``  string  ids of one claim, for an idempotent re-claim
``paused``             string  exists while the queue is paused (claim leases nothing)
``guard``              (none)  never exists: declared by scripts that derive keys (below)
``done:<id>``          pubsub  the job's events: active, progress, retrying, end
``cancel``             pubsub  ids of running jobs whose cancellation was asked
=====================  ======  ===========================================

The job record's fields and their codes are defined in ``record.py`` (the
only Python module that knows them).

A sharded queue (``App(queue_shards={"emails": 4})``) is N such queues,
``{emails#0}`` ... ``{emails#3}``, each in its own slot; a job lives in the
shard :func:`shard_index` picks from its id. Queue names cannot contain
``#``, so a shard's name never clashes with a queue's.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import ConfigurationError

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def check_name(kind: str, value: str) -> str:
    """Refuse names that would break the key layout (braces, colons, spaces)."""
    if not _NAME.match(value):
        raise ConfigurationError(
            f"{kind} {value!r} must be 1-100 characters of letters, digits, '_', '.', '-'"
        )
    return value


MAX_SHARDS = 256
"""Most shards one queue may have."""

_SHARD = re.compile(r"^[A-Za-z0-9_.\-]{1,100}#[0-9]{1,3}$")
# ids whose shard follows from a part of them: a workflow's members
# ("<workflow id>.<n>", "<workflow id>.cb") stay in the workflow's shard, and
# the ticks of one schedule ("cron.<name>.<tick ms>") in one shard, so that
# schedule's last-tick record is in the slot of every one of its jobs
_GROUPED = re.compile(r"^(?:([A-Za-z0-9_-]{16})\.(?:[0-9]+|cb)|(cron\..+)\.[0-9]+)$")


def check_queue_or_shard(value: str) -> str:
    """A queue name, or the name of one shard of a sharded queue (``emails#3``)."""
    if _SHARD.match(value):
        return value
    return check_name("queue", value)


def shard_name(queue: str, index: int) -> str:
    """The name (and hash tag) of shard ``index`` of ``queue``."""
    return f"{queue}#{index}"


def logical_queue(name: str) -> str:
    """The queue a shard belongs to (a queue's own name for an unsharded one)."""
    return name.partition("#")[0]


def shard_key(job_id: str) -> str:
    """The part of a job id that picks its shard (see ``_GROUPED``)."""
    grouped = _GROUPED.match(job_id)
    if grouped is None:
        return job_id
    return grouped.group(1) or grouped.group(2)


def shard_index(job_id: str, shards: int) -> int:
    """The shard of ``job_id`` among ``shards``: CRC-32 of its shard key, so
    every process (any Python, any host) agrees, and an id enqueued twice
    lands in the same shard (idempotent ids stay idempotent)."""
    return zlib.crc32(shard_key(job_id).encode("utf-8", "surrogatepass")) % shards


def route(shards: dict[str, int], queue: str, job_id: str) -> str:
    """The queue (for a sharded queue in ``shards``: the shard) holding ``job_id``."""
    count = shards.get(queue)
    return queue if count is None else shard_name(queue, shard_index(job_id, count))


def shard_names(shards: dict[str, int], queue: str) -> list[str]:
    """Every shard of ``queue`` (``[queue]`` when it is not in ``shards``)."""
    count = shards.get(queue)
    return [queue] if count is None else [shard_name(queue, i) for i in range(count)]


def check_task_name(value: str) -> str:
    """Task names are stored, not used in keys: any printable text up to 200."""
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise ConfigurationError(f"task name {value!r} must be 1-200 printable characters")
    return value


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue."""

    prefix: str
    queue: str
    base: str = field(init=False, repr=False, compare=False)
    """``<prefix>:{<queue>}:``, the start of every key (made once: every
    key of every call starts with it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", f"{self.prefix}:{{{self.queue}}}:")

    def job(self, job_id: str) -> str:
        return f"{self.base}job:{job_id}"

    def jobs(self, job_ids: Iterable[str]) -> list[str]:
        """:meth:`job` of each id (a batch's keys, without a call per id)."""
        base = self.base
        return [f"{base}job:{job_id}" for job_id in job_ids]

    def wait(self, priority: int) -> str:
        return f"{self.base}wait:{priority}"

    def workflow(self, wf_id: str) -> str:
        return f"{self.base}wf:{wf_id}"

    def workflow_members(self, wf_id: str) -> str:
        return f"{self.base}wfm:{wf_id}"

    def workflow_steps(self, wf_id: str) -> str:
        return f"{self.base}wfc:{wf_id}"

    def workflow_results(self, wf_id: str) -> str:
        return f"{self.base}wfr:{wf_id}"

    def reservation(self, reservation_id: str) -> str:
        return f"{self.base}rsv:{reservation_id}"

    def done_channel(self, job_id: str) -> str:
        return f"{self.base}done:{job_id}"

    @property
    def cancel_channel(self) -> str:
        return f"{self.base}cancel"

    @property
    def prios(self) -> str:
        return f"{self.base}prios"

    @property
    def wake(self) -> str:
        return f"{self.base}wake"

    @property
    def leases(self) -> str:
        return f"{self.base}leases"

    @property
    def delayed(self) -> str:
        return f"{self.base}delayed"

    @property
    def dead(self) -> str:
        return f"{self.base}dead"

    @property
    def reaper(self) -> str:
        return f"{self.base}reaper"

    @property
    def schedules(self) -> str:
        return f"{self.base}schedules"

    @property
    def paused(self) -> str:
        return f"{self.base}paused"

    @property
    def stats(self) -> str:
        return f"{self.base}stats"

    @property
    def guard(self) -> str:
        """Never written (see ``lua/includes/guard.lua``)."""
        return f"{self.base}guard"
