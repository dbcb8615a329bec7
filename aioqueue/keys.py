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
``done:<id>``          pubsub  the job's events: active, progress, retrying, end
``cancel``             pubsub  ids of running jobs whose cancellation was asked
=====================  ======  ===========================================

The job record's fields and their codes are defined in ``record.py`` (the
only Python module that knows them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigurationError

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def check_name(kind: str, value: str) -> str:
    """Refuse names that would break the key layout (braces, colons, spaces)."""
    if not _NAME.match(value):
        raise ConfigurationError(
            f"{kind} {value!r} must be 1-100 characters of letters, digits, '_', '.', '-'"
        )
    return value


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

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.queue}}}:"

    def job(self, job_id: str) -> str:
        return f"{self.base}job:{job_id}"

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
