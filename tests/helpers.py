"""Shared test helpers: wait on observable state with a deadline, drive worker
subprocesses, read the execution history that ``tests.fault_app`` writes."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .conftest import worker_process

T = TypeVar("T")

POLL_S = 0.02


async def wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float,
    *,
    what: str = "",
    interval: float = POLL_S,
) -> T:
    """Poll ``predicate`` (sync or async) every ``interval`` seconds until it
    returns something truthy, and return that value.

    :raises AssertionError: not true within ``timeout`` seconds (names ``what``
        and the last value seen).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or predicate!r}; "
                f"last value: {value!r}")
        await anyio.sleep(interval)


def wait_until_sync(
    predicate: Callable[[], T], timeout: float, *, what: str = "", interval: float = POLL_S
) -> T:
    """:func:`wait_until` for synchronous tests and predicates."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or predicate!r}; "
                f"last value: {value!r}")
        time.sleep(interval)


class WorkerProcess:
    """An ``aioqueue worker`` subprocess whose output is drained in a thread
    (a full pipe would block the worker), killed for sure by :meth:`close`."""

    def __init__(self, app_target: str, url: str, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.popen = worker_process(app_target, url, *extra, env=env)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.append(line)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def send(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    async def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; returns its exit code."""
        await wait_until(lambda: self.popen.poll() is not None, timeout,
                         what=f"worker {self.pid} to exit; output:\n{self.output}")
        self._reader.join(5)
        code = self.popen.returncode
        assert code is not None
        return code

    def close(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGCONT)
            self.popen.kill()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        self._reader.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # "start" | "end"
    marker: str
    pid: int


class History:
    """The execution history ``tests.fault_app.slow`` appends to (outside Redis)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    @property
    def env(self) -> dict[str, str]:
        return {"AQ_HISTORY": str(self.path)}

    def events(self, marker: str | None = None) -> list[Event]:
        out = []
        for line in self.path.read_text().splitlines():
            kind, mark, pid = line.split()
            if marker is None or mark == marker:
                out.append(Event(kind, mark, int(pid)))
        return out

    def starts(self, marker: str) -> list[int]:
        """Pids that started ``marker``, in order."""
        return [e.pid for e in self.events(marker) if e.kind == "start"]

    def ends(self, marker: str) -> list[int]:
        """Pids that finished ``marker``, in order."""
        return [e.pid for e in self.events(marker) if e.kind == "end"]


async def is_waiting(client: Any, keys: Any, job_id: str, priority: int = 0) -> bool:
    """The job is runnable: status ``queued`` and its id in its wait list."""
    status = await client.hget(keys.job(job_id), "st")
    ids = await client.lrange(keys.wait(priority), 0, -1)
    return bool(status == "queued" and job_id in ids)


async def is_leased(client: Any, keys: Any, job_id: str) -> bool:
    return await client.zscore(keys.leases, job_id) is not None
