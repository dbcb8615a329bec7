"""The Redis side of workflows: typed calls of ``workflow.lua``,
``workflow_members.lua`` and ``workflow_cancel.lua`` (part of the broker
layer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .broker import Broker, translate_errors
from .record import MemberJob, cjson_safe
from .script_codes import WorkflowCancelCode, WorkflowCode, WorkflowMembersCode

CHUNK = 1000
"""Members created per script call: a 100,000-member group is 100 short
calls, not one that blocks the server for seconds."""


def _flat(jobs: Sequence[MemberJob]) -> list[Any]:
    return [entry for job in jobs for entry in job.entries()]


async def create_workflow(broker: Broker, queue: str, wf_id: str, kind: str, size: int,
                          continue_on_error: bool, callback_spec: str,
                          members: Sequence[MemberJob], chain_specs: Sequence[str]) -> bool:
    """Create the workflow with its first members (atomically), then add the
    other members a chunk at a time. True if this call created it. On a
    sharded queue the workflow and all its members live in the shard of the
    workflow's id (members' ids ``<wf_id>.<n>`` route there, ``keys.shard_key``)."""
    k = broker.keys(broker.route(queue, wf_id))
    first = members[:CHUNK]
    args: list[Any] = [k.base, wf_id, kind, size, "1" if continue_on_error else "0",
                       callback_spec, len(first), *_flat(first), *chain_specs]
    keys = [k.workflow(wf_id), k.workflow_members(wf_id), k.workflow_steps(wf_id),
            k.prios, k.wake]
    with translate_errors(k.base):
        created = WorkflowCode(int(await broker.scripts.run(broker.lane, "workflow", keys,
                                                            args)))
    member_keys = [k.workflow(wf_id), k.workflow_members(wf_id), k.prios, k.wake, k.guard]
    for start in range(CHUNK, len(members), CHUNK):
        chunk = members[start:start + CHUNK]
        with translate_errors(k.base):
            code = WorkflowMembersCode(int(await broker.scripts.run(
                broker.lane, "workflow_members", member_keys,
                [k.base, wf_id, start, *_flat(chunk)])))
        if code is WorkflowMembersCode.NOT_RUNNING:
            break  # it already failed or was cancelled: the other members are moot
    return created is WorkflowCode.CREATED


async def cancel_workflow(broker: Broker, queue: str, wf_id: str, reason: str,
                          result_ttl_ms: int) -> WorkflowCancelCode:
    """End the workflow cancelled and cancel its members, in one script."""
    k = broker.keys(broker.route(queue, wf_id))
    keys = [k.workflow(wf_id), k.workflow_members(wf_id), k.workflow_steps(wf_id),
            k.workflow_results(wf_id), k.delayed, k.stats, k.guard]
    with translate_errors(k.base):
        code = await broker.scripts.run(broker.lane, "workflow_cancel", keys,
                                        [k.base, wf_id, cjson_safe(reason), result_ttl_ms])
    return WorkflowCancelCode(int(code))


async def workflow_fields(broker: Broker, queue: str, wf_id: str,
                          *fields: str) -> list[str | None]:
    with translate_errors():
        key = broker.keys(broker.route(queue, wf_id)).workflow(wf_id)
        values: Any = await broker.lane.execute("HMGET", key, *fields)
    return list(values)


async def workflow_member_ids(broker: Broker, queue: str, wf_id: str) -> list[str]:
    with translate_errors():
        ids: Any = await broker.lane.execute(
            "LRANGE", broker.keys(broker.route(queue, wf_id)).workflow_members(wf_id), 0, -1)
    return [str(i) for i in ids]
