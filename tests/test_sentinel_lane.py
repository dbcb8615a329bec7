"""Sentinel connections for the command lane, against a real primary, replica
and three Sentinels: they reach the primary, and after the primary dies they
reach the promoted replica without a restart."""

from __future__ import annotations

import time

import anyio
import pytest
import redis

from aioqueue.connection_sentinel import (
    SentinelURL,
    lane_factory,
    primary_pool,
    sentinel_manager,
)
from aioqueue.errors import ConfigurationError
from aioqueue.lane import CommandLane

from .harness.sentinel import LocalSentinel


def test_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    url = SentinelURL.parse("redis+sentinel://app:s%3Acret@h1:26379,h2/mymaster/3"
                            "?sentinel_password=x")
    assert url.sentinels == (("h1", 26379), ("h2", 26379))
    assert (url.service, url.db, url.username, url.password) == ("mymaster", 3, "app", "s:cret")
    assert url.sentinel_password == "x" and not url.tls
    assert SentinelURL.parse("rediss+sentinel://h/svc").tls


@pytest.mark.parametrize("bad", ["redis+sentinel://h1:26379", "redis+sentinel://h1/svc/x",
                                 "redis+sentinel://:1/svc", "redis://h/svc"])
def test_bad_sentinel_urls_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        SentinelURL.parse(bad)


async def test_lane_follows_the_promoted_replica_after_the_primary_dies(
        own_sentinel: LocalSentinel) -> None:
    url = SentinelURL.parse(own_sentinel.url)
    manager = sentinel_manager(url, socket_timeout_s=1.0, connect_timeout_s=1.0)
    pool = primary_pool(url, manager, for_lane=True, decode_responses=True,
                        socket_connect_timeout=1.0)
    lane = CommandLane(lane_factory(pool), size=4, timeout_s=1.0, retries=0)
    try:
        assert await lane.execute("SET", "k", "before") == "OK"
        assert await lane.execute("WAIT", 1, 5000) == 1
        old = own_sentinel.primary
        old.kill()
        started = time.monotonic()
        while True:  # what a role loop does: retry with a pause until it works
            try:
                await lane.execute("SET", "k", "after")
                break
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                assert time.monotonic() - started < 30, "no new primary within 30 s"
                await anyio.sleep(0.1)
        new = own_sentinel.current_primary()
        assert new is own_sentinel.replicas[0]
        with redis.Redis(host="127.0.0.1", port=new.port, decode_responses=True) as direct:
            assert direct.get("k") == "after"
    finally:
        await lane.close()
        await manager.aclose()
