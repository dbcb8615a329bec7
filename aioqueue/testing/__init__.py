"""Test your own tasks: a throw-away server, an in-process worker, ``drain``,
time travel and an eager mode.

```python
from aioqueue.testing import drain, run_worker

async def test_add(aioqueue_app):            # pytest fixture from the plugin
    job = await add.enqueue(1, 2)
    outcomes = await drain(aioqueue_app)
    assert outcomes.results() == [3]
```

Everything here runs the real worker against a real server (the same
embedded default as ``aioqueue dev``), except `eager`, which runs
tasks inline for quick unit tests (see its docstring for what differs).
The pytest plugin (fixtures ``aioqueue_server``, ``aioqueue_url``,
``aioqueue_app``) is registered through an entry point when aioqueue is
installed; ``pip install 'aioqueue[testing]'`` brings pytest-asyncio and a
bundled server binary.
"""

from __future__ import annotations

from .clock import advance as advance
from .clock import make_due as make_due
from .clock import trigger_schedule as trigger_schedule
from .eager import eager as eager
from .server import connected as connected
from .server import embedded_server as embedded_server
from .server import local_server as local_server
from .worker import DrainTimeout as DrainTimeout
from .worker import Outcome as Outcome
from .worker import Outcomes as Outcomes
from .worker import drain as drain
from .worker import fast_settings as fast_settings
from .worker import queues_of as queues_of
from .worker import run_worker as run_worker

__all__ = [
    "DrainTimeout",
    "Outcome",
    "Outcomes",
    "advance",
    "connected",
    "drain",
    "eager",
    "embedded_server",
    "fast_settings",
    "local_server",
    "make_due",
    "queues_of",
    "run_worker",
    "trigger_schedule",
]
