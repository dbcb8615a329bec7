"""The cancel listener: cancels running jobs whose cancellation was asked.

Requests arrive on each queue's cancel channel; one missed (the listener was
reconnecting) is caught by the next lease renewal, which reports the flag.
A request made while the worker was down is honoured by claim and reaper.
"""

from __future__ import annotations

import logging

from .record import Field
from .roles import WorkerState, keep_stepping
from .running import StopReason

log = logging.getLogger("aioqueue.worker")


class CancelListener:
    def __init__(self, state: WorkerState) -> None:
        self.state = state

    async def step(self, job_id: str) -> bool:
        """Handle one request: stop the runs of ``job_id`` here, with the
        reason stored in its record. Returns whether one was running."""
        runs = self.state.running.with_id(job_id)
        if not runs:
            return False
        reason = (await self.state.broker.job_fields(runs[0].job.queue, job_id,
                                                     Field.CANCEL))[0]
        for running in runs:
            running.stop(StopReason.CANCEL, reason or "cancelled")
        return True

    async def _listen(self) -> float:
        broker = self.state.broker
        channels = [broker.keys(q).cancel_channel for q in self.state.queues]
        async with broker.subscribe(*channels) as subscription:
            while True:
                message = await subscription.get(timeout=1.0)
                if message is not None:
                    await self.step(message[1])

    async def run(self) -> None:
        await keep_stepping("cancel listener", self._listen, self.state)

