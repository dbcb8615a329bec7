"""Architecture: one door to Redis. Only the broker layer imports redis, so
error translation, retries, metrics and (later) cluster routing each have
one home."""

from __future__ import annotations

from .import_graph import module_imports

BROKER_LAYER = {"aioqueue.connection", "aioqueue.broker", "aioqueue.lane",
                "aioqueue.scripts", "aioqueue.listener"}


def in_broker_layer(module: str) -> bool:
    return module in BROKER_LAYER or module.startswith(("aioqueue.broker_",
                                                         "aioqueue.connection_"))


def test_only_the_broker_layer_imports_redis() -> None:
    importers = {m for m, imported in module_imports().items() if "redis" in imported}
    assert importers, "the import graph found no redis import at all: is it reading the code?"
    outside = sorted(m for m in importers if not in_broker_layer(m))
    assert not outside, f"modules outside the broker layer import redis: {outside}"
