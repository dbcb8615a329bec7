"""Network partitions on one host: a worker runs in its own network
namespace, linked to the host by a veth pair; cutting the link (the host end
down) drops every packet both ways, as a partition does: open connections
hang (no reset), new ones time out. Healing it lets them carry on.

Finer faults are nftables rules inside the namespace (:meth:`Partitionable.drop`):
drop only the replies (requests still reach Redis and run: a one-way
partition) or only the requests, or drop a share of the packets both ways at
random (real packet loss: the kernel's TCP retransmits).

Needs root and ``ip netns`` (iproute2), and ``nft`` (nftables) for
:meth:`Partitionable.drop`; :func:`unavailable_reason` and
:func:`nft_unavailable_reason` say why not where they are missing, so the
tests skip with that reason.
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


def nft_unavailable_reason() -> str | None:
    if shutil.which("nft") is None:
        return "no 'nft' command (nftables)"
    return unavailable_reason()


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

    def drop(self, *, replies: bool = False, requests: bool = False,
             loss_percent: int = 0) -> None:
        """Replace the namespace's drop rules: ``replies`` drops every packet
        from the host, ``requests`` every packet to it, ``loss_percent`` that
        share of the packets both ways, at random. No argument: drop nothing."""
        if not 0 <= loss_percent <= 100:
            raise ValueError(f"loss_percent {loss_percent} not in 0..100")
        host = self.host_ip
        into = [f"ip saddr {host} counter drop"] if replies else []
        out = [f"ip daddr {host} counter drop"] if requests else []
        if loss_percent:
            into.append(f"ip saddr {host} numgen random mod 100 < {loss_percent} counter drop")
            out.append(f"ip daddr {host} numgen random mod 100 < {loss_percent} counter drop")
        script = "\n".join([
            "table inet aqfault", "delete table inet aqfault",  # start from nothing
            "table inet aqfault {",
            "  chain into { type filter hook input priority 0; policy accept;",
            *(f"    {rule}" for rule in into), "  }",
            "  chain out { type filter hook output priority 0; policy accept;",
            *(f"    {rule}" for rule in out), "  }",
            "}", ""])
        subprocess.run(self.command("nft", "-f", "-"), input=script, check=True,
                       capture_output=True, text=True)

    def dropped_packets(self) -> int:
        """Packets the drop rules dropped so far."""
        listing = subprocess.run(self.command("nft", "list", "table", "inet", "aqfault"),
                                 capture_output=True, text=True).stdout
        words = listing.split()
        return sum(int(words[i + 1]) for i, word in enumerate(words[:-1])
                   if word == "packets")

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
