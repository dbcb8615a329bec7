"""The status codes each Lua script answers, one enum per script.

Each enum mirrors the ``-- Code`` lines of its script's header
(``tests/test_script_headers.py`` checks that they agree), so callers compare
with names, never with bare integers.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Generic, TypeVar


class EnqueueCode(enum.IntEnum):
    """``enqueue.lua`` (and, per job, ``enqueue_batch.lua``)."""

    EXISTS = 0
    """The id exists for the same task: nothing written (a repeated enqueue)."""
    QUEUED = 1
    SCHEDULED = 2
    ID_TAKEN = 3
    """The id exists for another task: nothing written."""
    TICK_DONE = 4
    """This schedule tick (or a later one) was already fired."""
    UNIQUE_EXISTS = 5
    """A job with this unique key waits or runs: its id is answered, nothing written."""
    DEBOUNCED = 6
    """The waiting job with this unique key took the new arguments (and start)."""
    THROTTLED = 7
    """This unique key's window is not over: nothing written."""

    @property
    def created(self) -> bool:
        return self in (EnqueueCode.QUEUED, EnqueueCode.SCHEDULED)


class SettleCode(enum.IntEnum):
    """``settle.lua``, per settlement."""

    MALFORMED = -2
    """The job's record key holds another type of value (written by something
    else): the job cannot end or run again; its lease was dropped."""
    STALE = -1
    """The token no longer holds the lease: nothing written."""
    ALREADY_APPLIED = 0
    """This token's outcome was recorded before (a resent settle)."""
    APPLIED = 1


class RenewCode(enum.IntEnum):
    """``renew.lua``, per lease."""

    LOST = 0
    """This token no longer holds the lease: the worker must stop the job."""
    RENEWED = 1
    CANCEL_REQUESTED = 2
    """Renewed, but cancellation was asked: the worker must cancel the job."""


class ProgressCode(enum.IntEnum):
    """``progress.lua``."""

    STALE = -1
    RECORDED = 1


class WorkflowCode(enum.IntEnum):
    """``workflow.lua``."""

    EXISTED = 0
    CREATED = 1


class WorkflowCancelCode(enum.IntEnum):
    """``workflow_cancel.lua``."""

    ALREADY_ENDED = 0
    CANCELLED = 1


class WorkflowMembersCode(enum.IntEnum):
    """``workflow_members.lua``."""

    NOT_RUNNING = 0
    """The workflow ended (failed or cancelled) or does not exist: nothing added."""
    ADDED = 1


class CancelOutcome(enum.StrEnum):
    """What ``Job.cancel()`` did (``cancel.lua``'s answer)."""

    CANCELLED = "cancelled"
    """It was queued or scheduled: it ended cancelled now."""
    REQUESTED = "requested"
    """It is running: its worker was told and will cancel the coroutine."""
    ALREADY_FINISHED = "finished"
    """It had already ended: nothing was done."""
    NOT_FOUND = "missing"
    """No record of the job (never enqueued, or expired)."""


SCRIPT_CODES: dict[str, type[enum.Enum]] = {
    "enqueue": EnqueueCode,
    "enqueue_batch": EnqueueCode,
    "settle": SettleCode,
    "renew": RenewCode,
    "progress": ProgressCode,
    "workflow": WorkflowCode,
    "workflow_cancel": WorkflowCancelCode,
    "workflow_members": WorkflowMembersCode,
    "cancel": CancelOutcome,
}
"""Which enum answers for which script (scripts not named return counts or
lists, described in their header)."""



_Code = TypeVar("_Code", bound=enum.IntEnum)


class ReplyCodes(Generic[_Code]):
    """Maps a script's integer reply to its enum member with a dict lookup
    (an enum call costs about a microsecond, paid per job of a batch). An
    unknown code raises ValueError, as the enum call does."""

    def __init__(self, codes: type[_Code]) -> None:
        self._codes = codes
        self._by_reply = {int(code): code for code in codes}

    def __call__(self, reply: Any) -> _Code:
        code = self._by_reply.get(reply)
        return self._codes(int(reply)) if code is None else code

    def many(self, replies: Sequence[Any]) -> list[_Code]:
        """The members of a batch's replies (no call per reply)."""
        by_reply = self._by_reply
        codes = [by_reply.get(reply) for reply in replies]
        if None in codes:
            return [self(reply) for reply in replies]
        return codes  # type: ignore[return-value]  # no None left


enqueue_code = ReplyCodes(EnqueueCode)
settle_code = ReplyCodes(SettleCode)
renew_code = ReplyCodes(RenewCode)
