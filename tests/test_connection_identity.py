"""aioqueue's connections say who they are to the server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

import aioqueue
from aioqueue.connection_open import driver_info


@pytest.mark.single_server
async def test_aioqueue_connections_name_themselves_in_client_list(
    make_app: Callable[..., aioqueue.App], redis_url: str,
) -> None:
    """``CLIENT LIST`` shows ``lib-name redis-py(aioqueue_v<version>)`` for
    aioqueue's connections (servers with ``CLIENT SETINFO``: Redis >= 7.2,
    Valkey), so an operator can tell them from others; the driver information
    is made once per process, not looked up per connection."""
    if driver_info() is None:
        pytest.skip("this redis-py has no DriverInfo")
    assert driver_info() is driver_info()
    app = make_app()
    async with app:
        await app.broker.counts("default")
        raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            clients = await raw.client_list()
        finally:
            await raw.aclose()
    names = {c.get("lib-name") for c in clients}
    if names <= {None, ""}:
        pytest.skip("this server has no CLIENT SETINFO (Redis < 7.2)")
    assert f"redis-py(aioqueue_v{aioqueue.__version__})" in names
