"""Moved to :mod:`aioqueue.listener` (the broker layer's pub/sub listener);
this name stays importable until every caller has switched."""

from __future__ import annotations

from .listener import ResultListener as ResultListener
from .listener import Wakeup as Wakeup

__all__ = ["ResultListener", "Wakeup"]
