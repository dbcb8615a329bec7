"""A primary, its replica and three Sentinels on loopback.

The same binary as the rest of the suite (``redis-server`` or
``valkey-server``), Sentinels started as ``<binary> <conf> --sentinel`` from
their own writable config file (Sentinel rewrites it). Short timings so a
failover takes a few seconds: ``down-after-milliseconds`` 1000,
``failover-timeout`` 5000 (a second failover of the same primary waits twice
that).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from aioqueue.server import ServerBinary, ServerProcess

SERVICE = "mymaster"


class SentinelProcess(ServerProcess):
    """One Sentinel watching ``primary`` under the name :data:`SERVICE`."""

    def __init__(self, binary: ServerBinary, directory: Path, primary_port: int, *,
                 quorum: int, down_after_ms: int, failover_timeout_ms: int) -> None:
        super().__init__(binary, directory=directory)
        self.config = self.directory / "sentinel.conf"
        self.config.write_text(
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n")

    def command(self) -> list[str]:
        return [self.binary.path, str(self.config), "--sentinel",
                "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--logfile", "sentinel.log",
                "--protected-mode", "no"]

    def call(self, *args: Any) -> Any:
        with redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                         socket_timeout=5) as conn:
            return conn.execute_command(*args)

    def primary_address(self) -> tuple[str, int]:
        host, port = self.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return str(host), int(port)

    def state(self) -> dict[str, str]:
        flat = self.call("SENTINEL", "MASTER", SERVICE)
        if isinstance(flat, dict):
            return {str(k): str(v) for k, v in flat.items()}
        return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


class LocalSentinel:
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels."""

    def __init__(self, binary: ServerBinary, directory: Path, *, replicas: int = 1,
                 sentinels: int = 3, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 5000) -> None:
        self.binary = binary
        self.primary = ServerProcess(binary, directory=directory / "primary", extra_args=[
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
        self.replicas = [
            ServerProcess(binary, directory=directory / f"replica{i}", extra_args=[
                "--replicaof", "127.0.0.1", str(self.primary.port),
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
            for i in range(replicas)]
        self.servers = [self.primary, *self.replicas]
        self.sentinels = [
            SentinelProcess(binary, directory / f"sentinel{i}", self.primary.port,
                            quorum=sentinels // 2 + 1, down_after_ms=down_after_ms,
                            failover_timeout_ms=failover_timeout_ms)
            for i in range(sentinels)]

    @property
    def url(self) -> str:
        """``redis+sentinel://`` URL naming every Sentinel and the service."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def server_on(self, port: int) -> ServerProcess:
        return next(server for server in self.servers if server.port == port)

    def current_primary(self) -> ServerProcess:
        """The server the (first live) Sentinel names as primary now."""
        for sentinel in self.sentinels:
            try:
                return self.server_on(sentinel.primary_address()[1])
            except (redis.RedisError, OSError):
                continue
        raise RuntimeError("no Sentinel answers")

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for server in self.servers:
            server.start()
        for sentinel in self.sentinels:
            sentinel.start()
        others = len(self.sentinels) - 1

        def ready() -> bool:
            for sentinel in self.sentinels:
                state = sentinel.state()
                if int(state.get("num-other-sentinels", 0)) < others or \
                        int(state.get("num-slaves", 0)) < len(self.replicas):
                    return False
            return self._replicas_in_sync()

        _wait(ready, deadline, "every Sentinel to see the replicas and the other Sentinels")

    def _replicas_in_sync(self) -> bool:
        for replica in self.replicas:
            if replica.process is None or replica.process.poll() is not None:
                continue
            with redis.Redis(host="127.0.0.1", port=replica.port, decode_responses=True,
                             socket_timeout=5) as conn:
                info = conn.info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def stop(self) -> None:
        processes = [*self.sentinels, *self.servers]
        for proc in processes:
            if proc.process is not None and proc.process.poll() is None:
                proc.resume()
                proc.process.terminate()
        for proc in processes:
            proc.close()

    def __enter__(self) -> LocalSentinel:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _wait(predicate: Callable[[], bool], deadline: float, what: str) -> None:
    last: Any = None
    while True:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"sentinel: timed out waiting for {what} (last: {last!r})")
        time.sleep(0.05)
