"""Keep an async context open in a task of its own (asyncio)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.asynccontextmanager
async def held_open(context: contextlib.AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter and exit ``context`` in one task of its own, for frameworks that
    set up and tear down in different tasks (aiohttp's ``cleanup_ctx``,
    pytest-asyncio's fixtures): an open aioqueue app holds a task group, which
    must be left by the task that entered it. The holder task is awaited on
    exit, so it never outlives this block; an error while entering is raised
    here.
    """
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[T] = loop.create_future()
    release = asyncio.Event()

    async def hold() -> None:
        async with context as value:
            opened.set_result(value)
            await release.wait()

    holder = loop.create_task(hold())
    waits: list[asyncio.Future[Any]] = [holder, opened]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not opened.done():
            await holder  # it failed before it was open: its error is raised here
    except BaseException:
        holder.cancel()
        with contextlib.suppress(BaseException):
            await holder
        raise
    try:
        yield opened.result()
    finally:
        release.set()
        await holder
