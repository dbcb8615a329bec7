"""Workflows: chains, groups and chords whose state lives in Redis.

A workflow advances inside the Lua script that ends each member job (see
``lua/includes/advance_workflow.lua``): no coordinator polls, and a worker
that dies mid-workflow loses nothing, because the member's end and the
workflow's step are one atomic write.

A workflow runs in one queue (its keys share that queue's cluster slot):
every member runs there, whatever queue its task names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import anyio

from .broker_workflow import (
    cancel_workflow,
    create_workflow,
    workflow_fields,
    workflow_member_ids,
)
from .errors import (
    ConfigurationError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    ResultTimeout,
)
from .job import Job
from .prepared import new_job_id
from .record import WORKFLOW_RUNNING, JobStatus, MemberJob, WorkflowField
from .script_codes import WorkflowCancelCode
from .task import Signature

if TYPE_CHECKING:
    from .backend import Backend

R = TypeVar("R")
R1 = TypeVar("R1")
R2 = TypeVar("R2")
R3 = TypeVar("R3")


class Workflow(Generic[R]):
    """A handle on a running workflow."""

    def __init__(self, backend: Backend, wf_id: str, queue: str) -> None:
        self._backend = backend
        self.id = wf_id
        self.queue = queue

    def __repr__(self) -> str:
        return f"Workflow(id={self.id!r}, queue={self.queue!r})"

    async def _fields(self, *names: str) -> list[str | None]:
        return await workflow_fields(self._backend.broker, self.queue, self.id, *names)

    async def status(self) -> JobStatus:
        """``ACTIVE`` while running, then ``SUCCEEDED``, ``FAILED`` or
        ``CANCELLED``; ``UNKNOWN`` once its record expired."""
        (status,) = await self._fields(WorkflowField.STATUS)
        if status is None:
            return JobStatus.UNKNOWN
        return JobStatus.ACTIVE if status == WORKFLOW_RUNNING else JobStatus(status)

    async def members(self) -> list[Job[Any]]:
        """Every member job created so far."""
        ids = await workflow_member_ids(self._backend.broker, self.queue, self.id)
        return [Job(self._backend, i, self.queue) for i in ids]

    async def result(self, timeout: float | None = None) -> R:
        """The chain's last result, the group's list of results, or the
        chord callback's result. A failed member fails the workflow: its
        error is raised as ``JobFailed`` (``JobCancelled`` if cancelled)."""
        try:
            with anyio.fail_after(timeout):
                async with self._backend.results.watch(self.queue, self.id) as changed:
                    while True:
                        status, result, error = await self._fields(
                            WorkflowField.STATUS, WorkflowField.RESULT, WorkflowField.ERROR)
                        if status != WORKFLOW_RUNNING:
                            break
                        await changed.wait()
                        changed.clear()
        except TimeoutError:
            raise ResultTimeout(f"workflow {self.id} did not finish within {timeout} s",
                                job_id=self.id) from None
        if status is None:
            raise JobNotFound(f"workflow {self.id} has no record (expired?)", job_id=self.id)
        if status == JobStatus.SUCCEEDED:
            return json.loads(result or "null")  # type: ignore[no-any-return]
        err = json.loads(error) if error else {}
        if status == JobStatus.CANCELLED:
            raise JobCancelled(f"workflow {self.id} was cancelled: {err.get('message', '')}",
                               job_id=self.id)
        raise JobFailed(job_id=self.id, error_type=str(err.get("type", "Error")),
                        message=str(err.get("message", "")),
                        traceback=str(err.get("traceback", "")),
                        attempts=int(err.get("attempt") or 1))

    async def cancel(self, reason: str = "workflow cancelled") -> bool:
        """End the workflow cancelled, in one step: no further step or
        callback starts, waiting members end cancelled, running members are
        cancelled by their workers. False if it had already ended."""
        code = await cancel_workflow(self._backend.broker, self.queue, self.id, reason,
                                     self._backend.result_ttl_ms)
        return code is WorkflowCancelCode.CANCELLED


class _Start(Generic[R]):
    kind = ""

    def _backend(self, first: Signature[Any]) -> Backend:
        return first.task.backend

    async def enqueue(self, *, queue: str | None = None) -> Workflow[R]:
        raise NotImplementedError


class Chain(_Start[R]):
    """Steps run one after the other, each result feeding the next."""

    kind = "chain"

    def __init__(self, steps: list[Signature[Any]]) -> None:
        if len(steps) < 1:
            raise ConfigurationError("a chain needs at least one step")
        self.steps = steps

    async def enqueue(self, *, queue: str | None = None) -> Workflow[R]:
        backend = self._backend(self.steps[0])
        q = queue or self.steps[0].task.queue
        wf_id = new_job_id()
        first = self.steps[0].member(f"{wf_id}.0")
        specs = [s.spec(f"{wf_id}.{i}") for i, s in enumerate(self.steps[1:], start=1)]
        await create_workflow(backend.broker, q, wf_id, "chain", len(self.steps), False, "",
                              [first], specs)
        return Workflow(backend, wf_id, q)


class Group(_Start[list[R]]):
    """Members run in parallel; the result is the list of their results, in order."""

    kind = "group"

    def __init__(self, members: list[Signature[R]], continue_on_error: bool) -> None:
        if not members:
            raise ConfigurationError("a group needs at least one member")
        self.members = members
        self.continue_on_error = continue_on_error

    def _jobs(self, wf_id: str) -> list[MemberJob]:
        return [m.member(f"{wf_id}.{i}") for i, m in enumerate(self.members)]

    async def enqueue(self, *, queue: str | None = None) -> Workflow[list[R]]:
        backend = self._backend(self.members[0])
        q = queue or self.members[0].task.queue
        wf_id = new_job_id()
        await create_workflow(backend.broker, q, wf_id, "group", len(self.members),
                              self.continue_on_error, "", self._jobs(wf_id), [])
        return Workflow(backend, wf_id, q)


class Chord(_Start[R]):
    """A group, then a callback called once with the list of its results."""

    kind = "chord"

    def __init__(self, header: Group[Any], callback: Signature[R]) -> None:
        self.header = header
        self.callback = callback

    async def enqueue(self, *, queue: str | None = None) -> Workflow[R]:
        backend = self._backend(self.callback)
        q = queue or self.header.members[0].task.queue
        wf_id = new_job_id()
        await create_workflow(
            backend.broker, q, wf_id, "chord", len(self.header.members),
            self.header.continue_on_error, self.callback.spec(f"{wf_id}.cb"),
            self.header._jobs(wf_id), [])
        return Workflow(backend, wf_id, q)


@overload
def chain(a: Signature[R1], /) -> Chain[R1]: ...
@overload
def chain(a: Signature[Any], b: Signature[R2], /) -> Chain[R2]: ...
@overload
def chain(a: Signature[Any], b: Signature[Any], c: Signature[R3], /) -> Chain[R3]: ...
@overload
def chain(*steps: Signature[Any]) -> Chain[Any]: ...


def chain(*steps: Signature[Any]) -> Chain[Any]:
    """``chain(a.s(1), b.s(), c.s())``: ``c(b(a(1)))``, each step a job."""
    return Chain(list(steps))


def group(members: Iterable[Signature[R]], *, continue_on_error: bool = False) -> Group[R]:
    """``group(a.s(i) for i in range(100))``: run in parallel, results in order.
    With ``continue_on_error`` a failed member's place holds ``{"error": ...}``
    instead of failing the group."""
    return Group(list(members), continue_on_error)


def chord(header: Group[Any] | Iterable[Signature[Any]], callback: Signature[R]) -> Chord[R]:
    """``chord(group(...), total.s())``: the callback runs once, with the list
    of the group's results, after every member finished."""
    if not isinstance(header, Group):
        header = group(header)
    return Chord(header, callback)
