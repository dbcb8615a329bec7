"""A real Redis/Valkey Cluster on loopback, built without outside tools.

Three primaries and three replicas (by default) from the same ``redis-server``
or ``valkey-server`` binary the rest of the suite uses: the slots are
assigned with ``CLUSTER ADDSLOTSRANGE``, the nodes introduced with ``CLUSTER
MEET``, the replicas attached with ``CLUSTER REPLICATE``; the cluster is ready
when every node agrees on the slot map and reports ``cluster_state:ok``, and
every replica's link is up.

Start-up costs about a second on an idle machine: a short
``cluster-node-timeout``, diskless replication with no delay, no persistence.
Each node's bus port is chosen explicitly (``cluster-port``), so the client
ports can be any free ports.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import redis

from aioqueue.server import ServerBinary, ServerProcess, free_port

SLOTS = 16384
T = TypeVar("T")


class ClusterNode(ServerProcess):
    """One cluster node: a server process with cluster mode on."""

    def __init__(self, binary: ServerBinary, directory: Path, *, node_timeout_ms: int) -> None:
        self.bus_port = free_port()
        super().__init__(binary, directory=directory, extra_args=[
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-port", str(self.bus_port),
            "--cluster-require-full-coverage", "yes",
            "--cluster-allow-reads-when-down", "no",
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
            # replicas with replication offset 0 are left out of CLUSTER SLOTS:
            # the primary's pings move the offset
            "--repl-ping-replica-period", "1",
        ])

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain (non-cluster) client to this node only."""
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **kwargs)

    def call(self, *args: Any) -> Any:
        with self.client(socket_timeout=5) as conn:
            return conn.execute_command(*args)

    def node_id(self) -> str:
        return str(self.call("CLUSTER", "MYID"))

    def info(self, section: str) -> dict[str, str]:
        text = self.call("CLUSTER", "INFO") if section == "cluster" else None
        if text is None:
            with self.client(socket_timeout=5) as conn:
                return {k: str(v) for k, v in conn.info(section).items()}
        return dict(line.split(":", 1) for line in str(text).split() if ":" in line)


class LocalCluster:
    """``primaries`` primaries with ``replicas`` replicas each, on loopback.

    :param node_timeout_ms: ``cluster-node-timeout``: how long a node may be
        unreachable before it is failed over (and how long a cut-off primary
        keeps accepting writes).
    """

    def __init__(self, binary: ServerBinary, directory: Path, *, primaries: int = 3,
                 replicas: int = 1, node_timeout_ms: int = 2000) -> None:
        if primaries < 1 or replicas < 0:
            raise ValueError("need at least one primary and no negative replica count")
        self.binary = binary
        self.directory = directory
        self.node_timeout_ms = node_timeout_ms
        count = primaries * (1 + replicas)
        self.nodes = [ClusterNode(binary, directory / f"node{i}", node_timeout_ms=node_timeout_ms)
                      for i in range(count)]
        self.initial_primaries = self.nodes[:primaries]
        self.initial_replicas = self.nodes[primaries:]
        self.replicas_per_primary = replicas

    # -- addresses ------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL with the first node as the seed."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    @property
    def seed_url(self) -> str:
        """A plain ``redis://`` URL of the first node (for redis-py's RedisCluster)."""
        return self.nodes[0].url

    def node_for_port(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def slot_owner(self, slot: int) -> ClusterNode:
        """The primary that serves ``slot`` now (as the first live node sees it)."""
        for start, end, primary, *_ in self._slots():
            if start <= slot <= end:
                return self.node_for_port(int(primary[1]))
        raise LookupError(f"slot {slot} is not served")

    def key_owner(self, key: str) -> ClusterNode:
        return self.slot_owner(key_slot(key))

    def primaries(self) -> list[ClusterNode]:
        """The nodes serving slots now."""
        return sorted({self.node_for_port(int(entry[2][1])) for entry in self._slots()},
                      key=lambda node: node.port)

    def _slots(self) -> list[Any]:
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            with contextlib.suppress(redis.RedisError):
                return list(node.call("CLUSTER", "SLOTS"))
        raise RuntimeError("no cluster node answers")

    # -- life -------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.start()
        count = len(self.initial_primaries)
        for index, node in enumerate(self.initial_primaries):
            start = index * SLOTS // count
            end = (index + 1) * SLOTS // count - 1
            node.call("CLUSTER", "ADDSLOTSRANGE", start, end)
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            node.call("CLUSTER", "MEET", "127.0.0.1", seed.port, seed.bus_port)
        _wait(lambda: all(_known_nodes(node) == len(self.nodes) for node in self.nodes),
              deadline, "every node to know every other")
        primary_ids = [node.node_id() for node in self.initial_primaries]
        for index, replica in enumerate(self.initial_replicas):
            primary_id = primary_ids[index % count]
            _wait(lambda r=replica, p=primary_id: _try_replicate(r, p), deadline,
                  f"node {replica.port} to replicate {primary_id}")
        _wait(lambda: all(sum(1 for entry in _view(node) if entry[1] == "replica")
                          == len(self.initial_replicas) for node in self.nodes),
              deadline, "every node to see every replica")
        self.wait_healthy(deadline - time.monotonic())
        entries = 3 + self.replicas_per_primary
        _wait(lambda: all(len(row) == entries for node in self.nodes
                          for row in node.call("CLUSTER", "SLOTS")),
              deadline, "CLUSTER SLOTS to list every replica")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` with all slots, all
        live nodes see the same roles and slot owners, and every live replica is
        in sync with its primary."""
        deadline = time.monotonic() + timeout
        live = [n for n in self.nodes if n.process is not None and n.process.poll() is None]

        def healthy() -> bool:
            if len({_view(node) for node in live}) != 1:
                return False  # gossip has not spread every change yet
            for node in live:
                info = node.info("cluster")
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return False
                replication = node.info("replication")
                if replication.get("role") == "slave" and \
                        replication.get("master_link_status") != "up":
                    return False
            return True

        _wait(healthy, deadline, "the cluster to be healthy")

    def flush(self) -> None:
        """Empty every primary and each one's script cache (replicas follow)."""
        for node in self.primaries():
            node.call("FLUSHALL")
            node.call("SCRIPT", "FLUSH")

    def stop(self) -> None:
        for node in self.nodes:  # signal every node first: they stop in parallel
            if node.process is not None and node.process.poll() is None:
                node.resume()
                node.process.terminate()
        for node in self.nodes:
            node.close()

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _known_nodes(node: ClusterNode) -> int:
    text = str(node.call("CLUSTER", "NODES"))
    return sum(1 for line in text.splitlines()
               if line.strip() and "handshake" not in line and "noaddr" not in line)


def _view(node: ClusterNode) -> frozenset[tuple[str, ...]]:
    """What ``node`` believes: (id, role, its primary, its slots) of every node
    not flagged as failed."""
    view = set()
    for line in str(node.call("CLUSTER", "NODES")).splitlines():
        fields = line.split()
        if len(fields) < 8 or "fail" in fields[2].split(","):
            continue
        role = "replica" if "slave" in fields[2] else "primary"
        view.add((fields[0], role, fields[3], " ".join(fields[8:])))
    return frozenset(view)


def _try_replicate(replica: ClusterNode, primary_id: str) -> bool:
    try:
        replica.call("CLUSTER", "REPLICATE", primary_id)
    except redis.ResponseError as exc:  # "Unknown node": gossip has not reached it yet
        if "Unknown node" in str(exc):
            return False
        raise
    return True


def _wait(predicate: Callable[[], T], deadline: float, what: str) -> T:
    last: Any = None
    while True:
        try:
            value = predicate()
        except (redis.RedisError, OSError) as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"cluster: timed out waiting for {what} (last: {last!r})")
        time.sleep(0.05)


def key_slot(key: str) -> int:
    """The cluster slot of ``key`` (CRC16 of its hash tag, or of the key)."""
    raw = key.encode()
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1:end]
    return _crc16(raw) % SLOTS


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc
