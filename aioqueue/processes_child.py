"""The child side of ``aioqueue worker --processes N``: an ordinary worker
that obeys its parent (see :mod:`aioqueue.processes`).

Signals: Ctrl-C reaches the whole process group and systemd's default
``KillMode=control-group`` sends SIGTERM to every process, so a child may get
the same stop twice, once directly and once forwarded by the parent. A child
therefore ignores SIGINT, treats any number of graceful requests (SIGTERM, its
parent's death, a passed recycling limit) as one, and stops at once only on
SIGQUIT, which only the parent sends (on the operator's second signal).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from .context import CallNext, JobContext
from .supervisor import Supervisor

log = logging.getLogger("aioqueue.processes")

#: environment variable naming the child's end of the socket pair
CHILD_FD_ENV = "AIOQUEUE_PARENT_FD"
#: environment variable naming the child's slot (0 .. N-1); a replacement
#: child takes the slot of the one it replaces
CHILD_INDEX_ENV = "AIOQUEUE_CHILD_INDEX"
#: child -> parent: it handles SIGTERM gracefully from now on
READY = b"R"
#: child -> parent: it passed a recycling limit and is draining; start a fresh one
RECYCLING = b"X"
#: child -> parent, every HEARTBEAT_S: its event loop is not stuck
HEARTBEAT = b"H"
HEARTBEAT_S = 1.0
#: how often a child compares its resident memory with its limit
MEMORY_CHECK_S = 0.2


@dataclass(frozen=True, slots=True)
class ChildLimits:
    """When a child process hands over to a fresh one."""

    max_jobs: int | None = None
    max_memory_bytes: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ChildLimits:
        return cls(max_jobs=getattr(args, "max_jobs_per_child", None),
                   max_memory_bytes=getattr(args, "max_memory_per_child", None))


def resident_memory_bytes() -> int:
    """This process's resident set size (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def metrics_port(base: int | None) -> int | None:
    """The port this worker serves its metrics on: ``--metrics-port`` itself,
    or, in child ``i`` of ``--processes N``, ``--metrics-port + i`` (so the
    children never fight over one port, and each is its own scrape target)."""
    if base is None:
        return None
    return base + int(os.environ.get(CHILD_INDEX_ENV, "0") or 0)


class _ReadyStatus(anyio.abc.TaskStatus[None]):
    """Passed as the supervisor's task status: tells the parent it is up."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel

    def started(self, value: None = None) -> None:
        _send(self._channel, READY)


def _send(channel: socket.socket, message: bytes) -> None:
    try:
        channel.send(message)
    except OSError:  # the parent is gone: the end-of-file watcher stops us
        pass


class _ChildControl:
    """The child's one stop switch: any number of graceful requests (SIGTERM
    directly and forwarded, the parent's death, a passed limit) are one
    request; only SIGQUIT from the parent stops at once."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self._graceful = False

    def graceful(self) -> None:
        if not self._graceful:
            self._graceful = True
            self.supervisor.request_shutdown()

    def now(self) -> None:
        self.graceful()
        self.supervisor.request_shutdown()  # a second request: stop at once


async def serve(supervisor: Supervisor, args: argparse.Namespace) -> None:
    """Run ``supervisor``; as a child of ``--processes``, also obey the parent."""
    fd = os.environ.get(CHILD_FD_ENV)
    if fd is None:
        await supervisor.run()
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    supervisor.handle_signals = False
    control = _ChildControl(supervisor)
    channel = socket.socket(fileno=int(fd))
    channel.setblocking(False)
    error: Exception | None = None
    try:
        async with anyio.create_task_group() as watchers:
            await watchers.start(_obey_signals, control)
            watchers.start_soon(_watch_parent, control, channel)
            watchers.start_soon(_beat, channel)
            limits = ChildLimits.from_args(args)
            if limits.max_jobs is not None:
                _count_jobs(control, channel, limits.max_jobs)
            if limits.max_memory_bytes is not None:
                watchers.start_soon(_watch_memory, control, channel, limits.max_memory_bytes)
            try:
                await supervisor.run(task_status=_ReadyStatus(channel))
            except Exception as exc:  # re-raised below, outside the task group
                error = exc
            finally:
                watchers.cancel_scope.cancel()
    finally:
        channel.close()
    if error is not None:
        raise error


async def _obey_signals(control: _ChildControl, *,
                        task_status: anyio.abc.TaskStatus[None]) -> None:
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGQUIT) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGQUIT:
                    log.info("worker %s: the parent says stop now",
                             control.supervisor.worker_id)
                    control.now()
                else:
                    control.graceful()
    finally:
        # the worker has stopped: a late stop request must not kill the
        # process on its way out (the receiver restored the default action)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)


async def _beat(channel: socket.socket) -> None:
    """Tell the parent, from this event loop, that the loop runs: a task that
    blocks it (a CPU-bound loop or a blocking call in async code) stops the
    beats, and a parent with ``--child-timeout`` replaces the process."""
    while True:
        _send(channel, HEARTBEAT)
        await anyio.sleep(HEARTBEAT_S)


async def _watch_parent(control: _ChildControl, channel: socket.socket) -> None:
    """End of file on the socket pair: the parent died. Stop gracefully."""
    while True:
        await anyio.wait_readable(channel)
        try:
            data = channel.recv(64)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            log.warning("worker %s: parent process gone; stopping",
                        control.supervisor.worker_id)
            control.graceful()
            return


def _count_jobs(control: _ChildControl, channel: socket.socket, max_jobs: int) -> None:
    """Count jobs as they start (a middleware, so the count is exact): the
    job that reaches the limit still runs, then the child hands over."""
    started = 0

    async def count(ctx: JobContext, call_next: CallNext) -> Any:
        nonlocal started
        started += 1
        if started == max_jobs:
            _recycle(control, channel, f"started {started} jobs (limit {max_jobs})")
        return await call_next()

    control.supervisor.app.middleware(count)


async def _watch_memory(control: _ChildControl, channel: socket.socket, limit: int) -> None:
    while True:
        rss = resident_memory_bytes()
        if rss > limit:
            _recycle(control, channel, f"resident memory {rss >> 20} MiB "
                                       f"(limit {limit >> 20} MiB)")
            return
        await anyio.sleep(MEMORY_CHECK_S)


def _recycle(control: _ChildControl, channel: socket.socket, reason: str) -> None:
    log.info("worker %s: %s; finishing running jobs and handing over to a fresh process",
             control.supervisor.worker_id, reason)
    _send(channel, RECYCLING)
    control.graceful()
