"""The soak's network faults: partitions at the network level and a slow,
lossy link.

Where network namespaces can be made (root and ``ip netns``), worker 0 runs
in its own namespace and reaches the soak's fault proxy through a veth pair;
the nemesis then cuts that link (``link_cut``: 0.3-3 s, often longer than the
1 s lease, so its jobs are re-delivered and its late completions refused) or
makes it flap (``link_flap``: 3-6 cuts of 0.1-0.6 s). Elsewhere those two
faults are left out and the soak says why in one line.

Everywhere, ``slow_lossy_link`` degrades the proxy for 1-4 s: 200 ms added
each way and 30% packet loss as TCP turns it into a stream's delays (a chunk
held for a retransmission timeout of 200 ms - 1 s; see
:meth:`tests.harness.proxy.FaultProxy.degrade`). Every worker connects
through the proxy, so every worker sees it.
"""

from __future__ import annotations

import random

import anyio

from tests.harness.netns import Partitionable, unavailable_reason
from tests.harness.proxy import FaultProxy

LATENCY_S = 0.2
LOSS = 0.3


class Network:
    """The namespace (if any) and the network faults of one soak run."""

    def __init__(self, rng: random.Random, *, partitions: bool = True) -> None:
        self.rng = rng
        self.reason = unavailable_reason() if partitions else "turned off (--no-partitions)"
        self.net: Partitionable | None = None
        self.cut = False

    def setup(self) -> str:
        """Create the namespace; returns the line that says what is on."""
        if self.reason is None:
            self.net = Partitionable()
            try:
                self.net.create()
            except Exception as exc:  # any failure: run without partitions
                self.net.delete()
                self.net = None
                self.reason = f"cannot set up the namespace: {exc}"
        if self.net is None:
            return f"network partitions: off ({self.reason}); slow/lossy link: on"
        return (f"network partitions: on (worker 0 in namespace {self.net.name}, "
                f"reaching the proxy at {self.net.host_ip}); slow/lossy link: on")

    @property
    def kinds(self) -> list[str]:
        if self.net is None:
            return ["slow_lossy_link"]
        return ["link_cut", "link_flap", "slow_lossy_link"]

    @property
    def listen_on(self) -> tuple[str, ...]:
        """Where the proxy must listen besides 127.0.0.1."""
        return () if self.net is None else (self.net.host_ip,)

    def worker(self, index: int, argv: list[str], proxy: FaultProxy) -> list[str]:
        """The command line of worker ``index`` (``argv`` and its Redis URL)."""
        if index == 0 and self.net is not None:
            return self.net.command(*argv, "--url", proxy.url_at(self.net.host_ip))
        return [*argv, "--url", proxy.url]

    async def inject(self, kind: str, proxy: FaultProxy) -> None:
        if kind == "slow_lossy_link":
            proxy.degrade(LATENCY_S, LOSS, seed=self.rng.randrange(1 << 30))
            await anyio.sleep(self.rng.uniform(1.0, 4.0))
            proxy.degrade()
        elif kind == "link_cut":
            await self._cut_for(self.rng.uniform(0.3, 3.0))
        elif kind == "link_flap":
            for _ in range(self.rng.randint(3, 6)):
                await self._cut_for(self.rng.uniform(0.1, 0.6))
                await anyio.sleep(self.rng.uniform(0.1, 0.5))

    async def _cut_for(self, seconds: float) -> None:
        assert self.net is not None
        self.net.cut()
        self.cut = True
        try:
            await anyio.sleep(seconds)
        finally:
            self.heal()

    def heal(self) -> None:
        if self.net is not None and self.cut:
            self.net.heal()
            self.cut = False

    def close(self) -> None:
        if self.net is not None:
            self.net.heal()
            self.net.delete()
            self.net = None
