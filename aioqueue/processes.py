"""Multi-process workers: ``aioqueue worker --processes N``.

::

    parent (this module; no Redis connection of its own)
    ├─ signal watcher   1st SIGTERM/SIGINT: SIGTERM to every child (graceful);
    │                   2nd: SIGQUIT to every child (stop now)
    └─ one slot per process: start a child, wait for it, replace it
       └─ child = ``python -m aioqueue <the same arguments>``: an ordinary
          worker (:mod:`aioqueue.processes_child`) that talks to the parent
          over a socket pair

Children are started by exec, never by fork (a forked event loop, pool or
thread is a copy nobody owns). The socket pair carries one byte per event
from the child (``R`` ready, ``X`` recycling) and tells a child that its
parent died (end of file: graceful stop).

A child that exits before it was ever ready, while no child has ever been
ready, is a start-up failure (bad app, bad URL, wrong password), and a child
that exits with 1 or 2 stopped on an error it cannot retry (a permanent Redis
error such as NOPERM or WRONGTYPE): the parent stops every child and exits
with that code instead of restarting them in a loop. Any other unexpected
exit (a signal, a task calling ``os._exit``) is restarted after a capped,
jittered backoff; a
recycling child is replaced at once (the fresh one starts while the old one
finishes its running jobs).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc

from .backoff import full_jitter
from .processes_child import CHILD_FD_ENV, CHILD_INDEX_ENV, READY, RECYCLING

log = logging.getLogger("aioqueue.processes")

#: restart backoff: the wait grows from this base ...
RESTART_BASE_S = 0.5
#: ... up to this cap, for children that keep dying young
RESTART_CAP_S = 30.0
#: a child that lived this long before dying starts the backoff afresh
HEALTHY_LIFETIME_S = 30.0
#: a worker's own exit codes for "stopped on an error it cannot retry"
#: (1: a permanent Redis error or a bug, printed in one line; 2: a usage error):
#: a replacement would stop the same way, so the parent stops instead
STOPPED_CODES = frozenset({1, 2})


# -- options ------------------------------------------------------------------

def add_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--processes`` and the recycling options to the worker command."""
    parser.add_argument(
        "--processes", type=parse_processes, default=None, metavar="N|auto",
        help="run N worker processes under one parent that restarts crashed ones "
             "('auto' = the CPUs this process may use)")
    parser.add_argument(
        "--max-jobs-per-child", type=positive_int, default=None, metavar="N",
        help="replace a worker process after it started N jobs (implies --processes 1)")
    parser.add_argument(
        "--max-memory-per-child", type=parse_size, default=None, metavar="SIZE",
        help="replace a worker process whose resident memory passed SIZE "
             "(e.g. 512M, 2G; a bare number is MiB; implies --processes 1)")
    parser.add_argument(
        "--child-timeout", type=_positive_float, default=None, metavar="SECONDS",
        help="kill and replace a worker process whose event loop gave no sign of life "
             "for SECONDS (a task blocking the loop); its jobs return when their leases "
             "expire (implies --processes 1)")


def parse_processes(value: str) -> int:
    """``"auto"`` -> the usable CPU count; otherwise a positive integer."""
    if value.strip().lower() == "auto":
        return usable_cpus()
    return positive_int(value)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {value!r}")
    return number


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str) -> int:
    """``"512M"``, ``"2G"``, ``"300000K"`` -> bytes; a bare number is MiB."""
    match = _SIZE.match(value)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a size such as 512M or 2G, got {value!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _UNITS[unit or "m"])
    if size < 1:
        raise argparse.ArgumentTypeError(f"expected a size above zero, got {value!r}")
    return size


def wants_parent(args: argparse.Namespace) -> bool:
    """True when this ``aioqueue worker`` run should become a parent: a process
    count or a recycling limit was given, and we are not already a child."""
    if CHILD_FD_ENV in os.environ:
        return False
    return any(getattr(args, name, None) is not None
               for name in ("processes", "max_jobs_per_child", "max_memory_per_child",
                            "child_timeout"))




def run_parent(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run the parent of ``--processes`` until its children are done.

    :param argv: this command's arguments; each child runs with the same ones.
    """
    parent = Parent(argv, args.processes or 1, burst=bool(getattr(args, "burst", False)),
                    child_timeout_s=getattr(args, "child_timeout", None))
    return anyio.run(parent.run)


@dataclass(eq=False)
class _Child:
    index: int
    process: anyio.abc.Process
    channel: socket.socket
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    recycling: bool = False
    returncode: int | None = None
    #: when the child last sent anything (its heartbeat comes every second)
    last_seen: float = field(default_factory=time.monotonic)
    #: set when the child starts recycling or exits: its slot may move on
    released: anyio.Event = field(default_factory=anyio.Event)

    def send(self, signum: signal.Signals) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def describe_exit(self) -> str:
        code = self.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"


class Parent:
    """Starts ``count`` worker processes and keeps them running (see the module)."""

    def __init__(self, argv: Sequence[str], count: int, *, burst: bool = False,
                 child_timeout_s: float | None = None) -> None:
        self.command = [sys.executable, "-m", "aioqueue", *argv]
        self.count = count
        self.burst = burst
        self.child_timeout_s = child_timeout_s
        self._live: set[_Child] = set()
        self._stopping = False
        self._stop_now = False
        self._stop_event = anyio.Event()
        self._ever_ready = False
        self._halt_code: int | None = None
        self._unclean = 0

    async def run(self) -> int:
        """Run the children; the exit code: 0 when each one ended cleanly."""
        log.info("parent %d: starting %d worker processes", os.getpid(), self.count)
        async with anyio.create_task_group() as root:
            await root.start(self._watch_signals)
            if self.child_timeout_s is not None:
                root.start_soon(self._watch_heartbeats, self.child_timeout_s)
            async with anyio.create_task_group() as slots:
                for index in range(self.count):
                    slots.start_soon(self._slot, index, slots)
            root.cancel_scope.cancel()
        if self._halt_code is not None:
            return self._halt_code
        log.info("parent %d: all worker processes ended%s", os.getpid(),
                 f" ({self._unclean} not cleanly)" if self._unclean else "")
        return 1 if self._unclean else 0

    def stop(self, *, now: bool = False) -> None:
        """Ask every child to stop (gracefully, or at once); start no new ones."""
        self._stopping = True
        self._stop_now = self._stop_now or now
        self._stop_event.set()
        for child in list(self._live):
            if now or not child.recycling:  # a recycling child is stopping already
                child.send(signal.SIGQUIT if self._stop_now else signal.SIGTERM)

    async def _watch_signals(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if self._stopping:
                    log.info("parent %d: got %s again; children stop now", os.getpid(), name)
                    self.stop(now=True)
                else:
                    log.info("parent %d: got %s; children finish or hand back their jobs",
                             os.getpid(), name)
                    self.stop()

    async def _watch_heartbeats(self, timeout_s: float) -> None:
        """SIGKILL a ready child that sent nothing for ``timeout_s``: its
        event loop is stuck, so it neither runs nor renews nor stops."""
        while True:
            await anyio.sleep(min(1.0, timeout_s / 4))
            now = time.monotonic()
            for child in list(self._live):
                silent = now - child.last_seen
                if child.ready and not self._stopping and silent > timeout_s:
                    log.error("parent %d: worker process %d (pid %d) silent for %.1fs "
                              "(its event loop is blocked); killing it", os.getpid(),
                              child.index, child.process.pid, silent)
                    child.send(signal.SIGKILL)
                    child.last_seen = now  # one kill is enough

    async def _slot(self, index: int, children: anyio.abc.TaskGroup) -> None:
        failures = 0
        while not self._stopping:
            child = await self._start(index, children)
            await child.released.wait()
            if self._stopping or child.recycling:
                failures = 0
                continue
            if self.burst and child.returncode == 0:
                return  # its queues are empty
            if child.returncode in STOPPED_CODES or (not child.ready and not self._ever_ready):
                self._halt(child)
                return
            lived = time.monotonic() - child.started_at
            failures = 0 if lived >= HEALTHY_LIFETIME_S else failures + 1
            delay = full_jitter(failures, base=RESTART_BASE_S, cap=RESTART_CAP_S)
            log.warning("parent %d: worker process %d (pid %d) %s; restarting in %.1fs",
                        os.getpid(), index, child.process.pid, child.describe_exit(), delay)
            with anyio.move_on_after(delay):
                await self._stop_event.wait()

    def _halt(self, child: _Child) -> None:
        code = child.returncode if child.returncode and child.returncode > 0 else 1
        when = "" if child.ready else " before it was ready"
        log.error("parent %d: worker process %d %s%s; stopping every worker process "
                  "(the same error would stop a replacement: fix it and start again)",
                  os.getpid(), child.index, child.describe_exit(), when)
        self._halt_code = code
        self.stop()

    async def _start(self, index: int, children: anyio.abc.TaskGroup) -> _Child:
        ours, theirs = socket.socketpair()
        try:
            process = await anyio.open_process(
                self.command, stdin=subprocess.DEVNULL, stdout=None, stderr=None,
                env={**os.environ, CHILD_FD_ENV: str(theirs.fileno()),
                     CHILD_INDEX_ENV: str(index)},
                pass_fds=[theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        child = _Child(index, process, ours)
        self._live.add(child)
        log.info("parent %d: worker process %d started (pid %d)", os.getpid(), index,
                 process.pid)
        if self._stopping:  # the stop came while it was being started
            child.send(signal.SIGQUIT if self._stop_now else signal.SIGTERM)
        children.start_soon(self._follow, child)
        return child

    async def _follow(self, child: _Child) -> None:
        """Read the child's messages until it exits; then record how it ended."""
        with child.channel:
            while True:
                await anyio.wait_readable(child.channel)
                try:
                    data = child.channel.recv(64)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    break
                child.last_seen = time.monotonic()
                if READY in data:
                    child.ready = self._ever_ready = True
                    log.info("parent %d: worker process %d (pid %d) ready", os.getpid(),
                             child.index, child.process.pid)
                if RECYCLING in data:
                    child.recycling = True
                    child.released.set()
        child.returncode = await child.process.wait()
        self._live.discard(child)
        # a child that never got ready held no jobs: however it ended, nothing was lost
        if self._stopping and child.ready and child.returncode != 0:
            self._unclean += 1
            log.warning("parent %d: worker process %d (pid %d) %s during shutdown",
                        os.getpid(), child.index, child.process.pid, child.describe_exit())
        child.released.set()
