"""Each Lua script's header (KEYS, ARGV, return codes) is exact: checked
against the script's body, its status-code enum and the calls its Python
wrapper really sends to a real server."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pytest

import aioqueue
import aioqueue.broker_flow
import aioqueue.broker_workflow
from aioqueue.broker import Settlement
from aioqueue.flow import group_id
from aioqueue.lane import CommandLane
from aioqueue.script_codes import SCRIPT_CODES
from aioqueue.scripts import SCRIPT_NAMES, load_script

ENTRY = re.compile(r"^-- (KEYS|ARGV)\[(\d+)(\.\.)?\]( \(optional\))?(.*)$")
CODE = re.compile(r"^-- Code (-?\d+|'[a-z_]+') ([A-Z_]+): ")
GROUP = re.compile(r"\b(pairs|triples|groups of (\d+))\b")
# keys every queue has under a fixed name: a script gets them as KEYS, never
# builds them from the queue prefix
FIXED_KEY_NAMES = ("prios", "wake", "leases", "delayed", "dead", "stats", "reaper",
                   "schedules", "paused", "rsv:")


@dataclass
class Slots:
    """Declared KEYS or ARGV: fixed positions, optional ones, a variadic tail."""

    fixed: int = 0
    optional: int = 0
    tail_from: int | None = None
    group: int = 1
    per_group: bool = False
    """(KEYS tail) one key per ARGV group"""


@dataclass
class Header:
    keys: Slots = field(default_factory=Slots)
    argv: Slots = field(default_factory=Slots)
    codes: set[tuple[str, str]] = field(default_factory=set)


def raw_source(name: str) -> str:
    return resources.files("aioqueue").joinpath("lua", f"{name}.lua").read_text("utf-8")


def parse_header(name: str) -> Header:
    header = Header()
    for line in raw_source(name).splitlines():
        if not line.startswith("--"):
            break
        if m := CODE.match(line):
            header.codes.add((m.group(1).strip("'"), m.group(2)))
        if not (m := ENTRY.match(line)):
            continue
        slots = header.keys if m.group(1) == "KEYS" else header.argv
        index = int(m.group(2))
        if m.group(3):
            slots.tail_from = index
            if g := GROUP.search(m.group(5)):
                slots.group = {"pairs": 2, "triples": 3}.get(g.group(1)) or int(g.group(2))
            slots.per_group = "one per ARGV group" in m.group(5)
        else:
            assert index == slots.fixed + slots.optional + 1, f"{name}: {line!r} out of order"
            if m.group(4):
                slots.optional += 1
            else:
                assert not slots.optional, f"{name}: required {line!r} after optional ones"
                slots.fixed += 1
    return header


def body(name: str) -> str:
    """The expanded script without comment lines."""
    source = load_script(name).source
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("--"))


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_declared_key_is_used_and_fixed_keys_come_as_keys(name: str) -> None:
    header, code = parse_header(name), body(name)
    for index in range(1, header.keys.fixed + header.keys.optional + 1):
        assert f"KEYS[{index}]" in code, f"{name}.lua declares KEYS[{index}] but never uses it"
    literal = {int(i) for i in re.findall(r"KEYS\[(\d+)\]", code)}
    assert not literal or max(literal) <= header.keys.fixed + header.keys.optional, (
        f"{name}.lua uses an undeclared KEYS entry")
    for fixed in FIXED_KEY_NAMES:
        assert f".. '{fixed}" not in code, f"{name}.lua builds the key {fixed!r} from the prefix"
    uses = {int(i) for i in re.findall(r"ARGV\[(\d+)\]", code)}
    declared = header.argv.fixed + header.argv.optional
    assert not uses or max(uses) <= max(declared, header.argv.tail_from or 0), (
        f"{name}.lua uses ARGV entries its header does not declare")


@pytest.mark.parametrize("name", sorted(SCRIPT_CODES))
def test_status_codes_match_the_header(name: str) -> None:
    enum_type = SCRIPT_CODES[name]
    declared = parse_header(name).codes
    members = {(str(m.value), m.name) for m in enum_type}  # type: ignore[attr-defined]
    assert declared, f"{name}.lua declares no '-- Code' lines"
    assert declared <= members, f"{name}.lua codes {declared - members} not in {enum_type}"
    if name != "enqueue_batch":  # per job: the tick code cannot happen
        assert declared == members, f"{enum_type} has codes {members - declared} not in header"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_shared_pieces_are_included_not_copied(name: str) -> None:
    text = raw_source(name)
    assert "redis.call('TIME')" not in text, f"{name}.lua: use now_ms.lua"
    assert "'PUBLISH'" not in text, f"{name}.lua: publish through notify.lua"
    assert "'RPUSH', KEYS" not in text or "wake" not in text.split("'RPUSH', KEYS")[1][:20], (
        f"{name}.lua: use wake.lua")


def test_acl_lines_allow_exactly_what_the_scripts_call() -> None:
    from .test_security import ACL_WORKER, SCRIPT_COMMANDS

    called = set()
    for path in resources.files("aioqueue").joinpath("lua").iterdir():
        if path.name.endswith(".lua"):
            called |= set(re.findall(r"redis\.p?call\('([A-Z]+)'", path.read_text("utf-8")))
    for path in resources.files("aioqueue").joinpath("lua", "includes").iterdir():
        called |= set(re.findall(r"redis\.p?call\('([A-Z]+)'", path.read_text("utf-8")))
    called = {c.lower() for c in called}
    allowed = {rule[1:].split("|")[0] for rule in ACL_WORKER.split() if rule.startswith("+")}
    assert called <= allowed, f"scripts call commands the ACL lines deny: {called - allowed}"
    assert set(SCRIPT_COMMANDS.split()) <= called, (
        f"the ACL lines allow commands no script calls: {set(SCRIPT_COMMANDS.split()) - called}")


def check_call(name: str, numkeys: int, args: list[Any]) -> None:
    header = parse_header(name)
    keys, argv = header.keys, header.argv
    nargs = len(args)
    if argv.tail_from is None:
        assert argv.fixed <= nargs <= argv.fixed + argv.optional, (
            f"{name}: wrapper sends {nargs} ARGV, header declares {argv.fixed}"
            f"(+{argv.optional} optional)")
        groups = 0
    else:
        tail = nargs - (argv.tail_from - 1)
        assert tail >= 0 and tail % argv.group == 0, (
            f"{name}: wrapper sends {nargs} ARGV: not {argv.tail_from - 1} + groups of "
            f"{argv.group}")
        groups = tail // argv.group
    if keys.tail_from is None:
        assert keys.fixed <= numkeys <= keys.fixed + keys.optional, (
            f"{name}: wrapper sends {numkeys} KEYS, header declares {keys.fixed}"
            f"(+{keys.optional} optional)")
    else:
        assert keys.per_group, f"{name}: a KEYS tail must be one key per ARGV group"
        assert numkeys == keys.fixed + groups, (
            f"{name}: wrapper sends {numkeys} KEYS for {groups} groups, header wants "
            f"{keys.fixed} + one per group")


async def test_every_wrapper_sends_what_its_header_declares(
    make_app: Callable[..., aioqueue.App], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[Any, ...]] = []
    original_many = CommandLane.execute_many

    async def spy_many(self: CommandLane, commands: Any, timeout_s: Any = -1.0) -> Any:
        sent.extend(tuple(c) for c in commands)
        return await original_many(self, commands, timeout_s)

    monkeypatch.setattr(CommandLane, "execute_many", spy_many)
    original = CommandLane.execute

    async def spy(self: CommandLane, *args: Any, timeout_s: Any = -1.0) -> Any:
        sent.append(args)
        return await original(self, *args, timeout_s=timeout_s)

    monkeypatch.setattr(CommandLane, "execute", spy)
    monkeypatch.setattr(aioqueue.broker_workflow, "CHUNK", 1)  # a group in chunks

    app = make_app()

    @app.task(name="add")
    async def add(ctx: aioqueue.JobContext, a: int, b: int) -> int:
        return a + b

    async with app:
        broker, q = app.broker, app.default_queue
        await add.enqueue(1, 2)
        await add.options(delay=60).enqueue(1, 2)
        await add.enqueue_many([add.bind(i, i) for i in range(3)])
        await aioqueue.broker_flow.enqueue_flow(broker, q, "g-1", "add", '{"a":1,"b":2}',
                                                group=group_id("add", "k"))
        await aioqueue.broker_flow.enqueue_grouped_many(broker, q, [])
        await broker.fire_tick(q, "every-minute", 60_000, "tick-1", "add", '{"args":[1,2]}', 0)
        async with broker.blocking_client("t") as lane:
            jobs, _ = await broker.claim(lane, q, 3, 5_000, "w1")
            await broker.claim_after_wait(lane, q, 0.01, 1, 5_000, "w1")
        await broker.renew(q, [(j.id, j.token) for j in jobs], 5_000)
        await broker.progress(q, jobs[0].id, jobs[0].token, '{"fraction": 0.5, "message": ""}')
        await broker.settle(q, [Settlement(jobs[0].id, jobs[0].token, "ok", "3"),
                                Settlement(jobs[1].id, jobs[1].token, "dead", "{}")],
                            default_result_ttl_ms=60_000, dead_letter_ttl_ms=60_000)
        await broker.reap(q, limit=10, max_deliveries=3, dead_letter_ttl_ms=60_000)
        await broker.cancel(q, jobs[2].id, "stop", 60_000)
        await broker.replay(q, [jobs[1].id])
        await broker.purge_dead(q, ["nope"])
        wf = await aioqueue.group([add.s(1, 2), add.s(3, 4)]).enqueue()
        assert await wf.cancel()
        await aioqueue.chain(add.s(1, 2), add.s(3)).enqueue()
    by_sha = {s.sha: s.name for s in broker.scripts.scripts.values()}
    by_sha |= {load_script(n, flags=True).sha: n for n in SCRIPT_NAMES}
    called = set()
    for command in sent:
        if command[0] != "EVALSHA":
            continue
        name = by_sha[command[1]]
        numkeys = int(command[2])
        check_call(name, numkeys, list(command[3 + numkeys:]))
        called.add(name)
    assert called == set(SCRIPT_NAMES), f"wrappers not exercised: {set(SCRIPT_NAMES) - called}"
