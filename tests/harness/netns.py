"""Network partitions on one host: a worker runs in its own network
namespace, linked to the host by a veth pair; cutting the link (the host end
down) drops every packet both ways, as a partition does: open connections
hang (no reset), new ones time out. Healing it lets them carry on.

Needs root and ``ip netns`` (iproute2); :func:`unavailable_reason` says why
not where they are missing, so the tests skip with that reason.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from types import TracebackType


def unavailable_reason() -> str | None:
    if shutil.which("ip") is None:
        return "no 'ip' command (iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"aqprobe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Partitionable:
    """A namespace ``name`` whose processes reach the host at :attr:`host_ip`."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.name = f"aq{tag}"
        self.host_end = f"aqh{tag}"[:15]
        self.ns_end = f"aqn{tag}"[:15]
        subnet = random.randrange(1, 250)
        self.host_ip = f"10.213.{subnet}.1"
        self.ns_ip = f"10.213.{subnet}.2"

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.ns_end)
        _ip("link", "set", self.ns_end, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_end)
        _ip("link", "set", self.host_end, "up")
        _ip("netns", "exec", self.name, "ip", "addr", "add", f"{self.ns_ip}/24", "dev",
            self.ns_end)
        _ip("netns", "exec", self.name, "ip", "link", "set", self.ns_end, "up")
        _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        _ip("link", "set", self.host_end, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_end, "up")

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def __enter__(self) -> Partitionable:
        try:
            self.create()
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.delete()
