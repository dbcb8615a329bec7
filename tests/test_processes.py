"""``aioqueue worker --processes N``: a parent over real worker processes
against a real server (crashes, signals, recycling)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aioqueue.cli import build_parser
from aioqueue.job import JobStatus
from aioqueue.processes import parse_processes, parse_size

from .conftest import REPO
from .fault_app import build_app
from .helpers import History, wait_until
from .processes_app import build

TARGET = "tests.processes_app:app"


def child_pids(parent: int) -> set[int]:
    """Live processes whose parent is ``parent`` (read from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(entry.name))
    return found


class ParentProcess:
    """``aioqueue worker --processes ...`` in its own session (so a test may
    signal its whole process group as Ctrl-C would); :meth:`close` kills the
    group for sure."""

    def __init__(self, url: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "aioqueue", "worker", TARGET, "--url", url, *extra],
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            start_new_session=True)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def children(self) -> set[int]:
        return child_pids(self.popen.pid)

    def ready_children(self) -> int:
        """How many children (counting replacements) the parent saw ready."""
        return self.output.count(") ready")

    async def wait_exit(self, timeout: float) -> int:
        await wait_until(lambda: self.popen.poll() is not None, timeout,
                         what=f"parent to exit; output:\n{self.output}")
        self._reader.join(5)
        assert self.popen.returncode is not None
        return self.popen.returncode

    def close(self) -> None:
        if self.popen.poll() is None or child_pids(self.popen.pid):
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(10)
        self._reader.join(5)


@pytest.fixture
def parents() -> Iterator[list[ParentProcess]]:
    started: list[ParentProcess] = []
    yield started
    for parent in started:
        parent.close()


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "history")


def start(parents: list[ParentProcess], url: str, *extra: str,
          env: dict[str, str] | None = None) -> ParentProcess:
    parent = ParentProcess(url, *extra, env=env)
    parents.append(parent)
    return parent


async def test_killed_child_is_replaced_and_its_job_redelivered(
        redis_url: str, parents: list[ParentProcess], history: History) -> None:
    parent = start(parents, redis_url, "--processes", "2", env=history.env)
    await wait_until(lambda: parent.ready_children() == 2, 30, what="two children up")
    app = build_app(redis_url)
    async with app:
        victim = await app.enqueue("slow", 1.0, "victim")
        pid = (await wait_until(lambda: history.starts("victim"), 15, what="victim started"))[0]
        assert pid in parent.children()
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: len(parent.children() - {pid}) == 2, 30,
                         what=f"a replacement child; output:\n{parent.output}")
        # the lease (1 s) runs out and another child runs it in full
        assert str(await victim.result(timeout=30)).startswith("victim:")
        assert history.ends("victim") and history.ends("victim")[-1] != pid
        others = [await app.enqueue("quick", n) for n in range(20)]
        assert [await job.result(timeout=30) for job in others] == [n * 2 for n in range(20)]
    assert parent.popen.poll() is None, "the parent lives on after a child's crash"
    os.kill(parent.popen.pid, signal.SIGTERM)
    assert await parent.wait_exit(30) == 0, parent.output


async def test_sigterm_to_parent_hands_back_running_jobs_and_exits_zero(
        redis_url: str, parents: list[ParentProcess], history: History) -> None:
    parent = start(parents, redis_url, "--processes", "2",
                   env={**history.env, "AQ_GRACE": "0.2"})
    await wait_until(lambda: parent.ready_children() == 2, 30, what="two children up")
    app = build_app(redis_url)
    async with app:
        jobs = [await app.enqueue("slow", 600.0, f"long{n}") for n in range(4)]
        await wait_until(lambda: all(history.starts(f"long{n}") for n in range(4)), 15,
                         what="all four running")
        children = parent.children()
        os.kill(parent.popen.pid, signal.SIGTERM)
        assert await parent.wait_exit(30) == 0, parent.output
        assert not any(_alive(pid) for pid in children)
        # every job is back in its queue at once (not left to lease expiry)
        assert [await job.status() for job in jobs] == [JobStatus.QUEUED] * 4


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


async def test_ctrl_c_to_the_process_group_is_one_graceful_stop(
        redis_url: str, parents: list[ParentProcess], history: History) -> None:
    """SIGINT reaches the parent and every child at once (Ctrl-C); the parent
    forwards SIGTERM. A child must read that as one stop request, not two
    (a second means "stop now"): the running job gets its grace period."""
    parent = start(parents, redis_url, "--processes", "2",
                   env={**history.env, "AQ_GRACE": "30"})
    await wait_until(lambda: parent.ready_children() == 2, 30, what="two children up")
    app = build_app(redis_url)
    async with app:
        job = await app.enqueue("slow", 1.0, "graceful")
        await wait_until(lambda: history.starts("graceful"), 15, what="job started")
        os.killpg(parent.popen.pid, signal.SIGINT)
        assert await parent.wait_exit(30) == 0, parent.output
        assert await job.status() == JobStatus.SUCCEEDED


async def test_child_is_recycled_after_max_jobs(
        redis_url: str, parents: list[ParentProcess]) -> None:
    parent = start(parents, redis_url, "--processes", "1", "--concurrency", "1",
                   "--max-jobs-per-child", "3")
    await wait_until(lambda: parent.ready_children() == 1, 30, what="child up")
    app = build_app(redis_url)
    async with app:
        jobs = [await app.enqueue("slow", 0.0, f"m{n}") for n in range(9)]
        pids = [str(await job.result(timeout=60)).split(":")[1] for job in jobs]
    # one process ran at a time, three jobs each, in order
    assert [pids[i:i + 3] for i in range(0, 9, 3)] == [[p] * 3 for p in pids[::3]]
    assert len(set(pids)) == 3, pids
    assert parent.popen.poll() is None
    os.kill(parent.popen.pid, signal.SIGTERM)
    assert await parent.wait_exit(30) == 0, parent.output


async def test_child_is_recycled_past_max_memory(
        redis_url: str, parents: list[ParentProcess]) -> None:
    parent = start(parents, redis_url, "--processes", "1", "--concurrency", "1",
                   "--max-memory-per-child", "150M")
    await wait_until(lambda: parent.ready_children() == 1, 30, what="child up")
    app = build(redis_url)
    async with app:
        first = await (await app.enqueue("leak", 200)).result(timeout=60)
        # the leaking process hands over; the next job runs in a fresh one
        await wait_until(lambda: parent.ready_children() == 2, 30,
                         what=f"a fresh child; output:\n{parent.output}")
        second = await (await app.enqueue("leak", 1)).result(timeout=60)
        assert first != second
    os.kill(parent.popen.pid, signal.SIGTERM)
    assert await parent.wait_exit(30) == 0, parent.output


async def test_child_that_cannot_start_stops_the_parent(
        parents: list[ParentProcess]) -> None:
    """A child that fails before it is ready (here: nothing listens at the
    URL) is not restarted in a loop: the parent stops with its exit code."""
    parent = start(parents, "redis://127.0.0.1:1/0", "--processes", "2")
    assert await parent.wait_exit(60) != 0
    assert "before it was ready" in parent.output
    assert not parent.children()


@pytest.mark.parametrize(("argv", "message"), [
    (["--processes", "0"], "expected a positive integer"),
    (["--processes", "many"], "expected a positive integer"),
    (["--max-jobs-per-child", "-1"], "expected a positive integer"),
    (["--max-memory-per-child", "lots"], "expected a size"),
])
def test_bad_process_options_are_refused_with_one_line(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["worker", TARGET, *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_sizes_and_process_counts_parse() -> None:
    assert parse_size("512M") == parse_size("512") == 512 << 20
    assert parse_size("2G") == parse_size("2GiB") == 2 << 30
    assert parse_size("300000k") == 300000 << 10
    assert parse_processes("auto") == len(os.sched_getaffinity(0))
    assert parse_processes("3") == 3


async def test_child_with_a_blocked_event_loop_is_killed_and_replaced(
        redis_url: str, parents: list[ParentProcess], tmp_path: Path) -> None:
    """A task blocks its process's event loop (``time.sleep`` in async code):
    the heartbeats stop, the parent kills the process after --child-timeout,
    a replacement starts, and the job comes back after its lease (its second
    delivery does not block)."""
    parent = start(parents, redis_url, "--processes", "1", "--child-timeout", "2")
    await wait_until(lambda: parent.ready_children() == 1, 30, what="child up")
    app = build(redis_url)
    async with app:
        job = await app.enqueue("stall", str(tmp_path / "first-run"), 600.0)
        assert await job.result(timeout=60) == "again"
    assert "silent for" in parent.output
    assert parent.ready_children() == 2
    os.kill(parent.popen.pid, signal.SIGTERM)
    assert await parent.wait_exit(30) == 0, parent.output


async def test_child_stopped_by_a_permanent_error_stops_the_parent(
        redis_url: str, parents: list[ParentProcess]) -> None:
    """A worker that stops on an error it cannot retry (here a queue key of
    the wrong type: WRONGTYPE) exits 1; a replacement would stop the same
    way, so the parent stops every child and exits 1 instead of looping."""
    parent = start(parents, redis_url, "--processes", "2")
    await wait_until(lambda: parent.ready_children() == 2, 30, what="two children up")
    with redis.Redis.from_url(redis_url) as client:
        client.delete("aioqueue:{default}:wake")
        client.set("aioqueue:{default}:wake", "not a list")
    assert await parent.wait_exit(60) == 1, parent.output
    assert "restarting in" not in parent.output
    assert parent.output.count(" started (pid") == 2
    assert not parent.children()
