"""Worker settings. Every interval is configurable so tests can run on
sub-second timings; the defaults suit production."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigurationError


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerSettings:
    """How a supervisor runs jobs.

    :param lease_s: how long a claimed job stays invisible to other workers
        without renewal. A worker that dies loses its jobs to another worker
        after at most this long. A worker whose renewals keep failing cancels
        a run itself one lease past its lease deadline (its local lease clock)
        and hands the job back, so an old run overlaps a re-delivery by at
        most one lease.
    :param renew_interval_s: how often running jobs' leases are extended
        (default: a third of the lease).
    :param reaper_interval_s: how often expired leases are looked for.
    :param reaper_grace_s: after (re)connecting, wait this long before reaping,
        so that leases that could not be renewed during an outage are renewed
        first (no expiry storm when Redis comes back).
    :param block_s: how long an idle fetcher blocks on one wait (bounded so
        shutdown never has to cut a blocking read).
    :param claim_batch: most jobs claimed in one round trip when busy.
    :param shutdown_grace_s: on SIGTERM/SIGINT, how long running jobs may go
        on before they are cancelled and handed straight back to the queue.
    :param max_deliveries: default delivery limit: a job whose lease expired
        this many times (its worker crashed, hung or was cut off each time) is
        dead-lettered instead of re-delivered again.
    :param burst_horizon_s: in ``--burst`` mode, scheduled jobs due further
        away than this do not keep the worker alive.
    :param reconnect_cap_s: the longest wait between reconnect attempts.
    :param loop_lag_warn_s: warn when the event loop was blocked this long
        (default: a third of the lease).
    :param heartbeat_interval_s: how often the worker writes its heartbeat to
        the worker registry (``aioqueue workers``); it shows as lost after
        three silent intervals.
    :param heartbeat: write heartbeats at all. Off, the worker is missing
        from ``aioqueue workers``, the dashboard and the queues' live-worker
        counts (for measuring what heartbeats cost; leave it on otherwise).
    """

    lease_s: float = 15.0
    renew_interval_s: float | None = None
    reaper_interval_s: float = 1.0
    reaper_grace_s: float | None = None
    block_s: float = 1.0
    claim_batch: int = 100
    shutdown_grace_s: float = 10.0
    max_deliveries: int = 5
    burst_horizon_s: float = 5.0
    reconnect_cap_s: float = 2.0
    loop_lag_warn_s: float | None = None
    heartbeat_interval_s: float = 5.0
    heartbeat: bool = True

    def __post_init__(self) -> None:
        for name in ("lease_s", "reaper_interval_s", "block_s",
                     "reconnect_cap_s", "heartbeat_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"WorkerSettings.{name} must be > 0")
        if self.renew_interval_s is not None and not 0 < self.renew_interval_s < self.lease_s:
            raise ConfigurationError("renew_interval_s must be > 0 and shorter than lease_s")
        if self.claim_batch < 1 or self.max_deliveries < 1:
            raise ConfigurationError("claim_batch and max_deliveries must be >= 1")
        if self.shutdown_grace_s < 0 or self.burst_horizon_s < 0:
            raise ConfigurationError("shutdown_grace_s and burst_horizon_s must be >= 0")

    @property
    def renew_every_s(self) -> float:
        return self.renew_interval_s if self.renew_interval_s is not None else self.lease_s / 3

    @property
    def reap_grace_s(self) -> float:
        return self.reaper_grace_s if self.reaper_grace_s is not None else self.renew_every_s

    @property
    def lag_warn_s(self) -> float:
        return self.loop_lag_warn_s if self.loop_lag_warn_s is not None else self.lease_s / 3
