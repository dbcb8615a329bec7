"""Wrong uses: mypy must reject each line marked with its expected error code."""

from __future__ import annotations

import aioqueue

app = aioqueue.App("redis://localhost:6379/0")


@app.task
async def add(x: int, y: int) -> int:
    return x + y


async def produce() -> None:
    await add.enqueue("a", 2)  # E: arg-type
    await add.enqueue(1)  # E: call-arg
    await add.enqueue(1, 2, z=3)  # E: call-arg
    await add.options(priority=1).enqueue(1, "b")  # E: arg-type
    text: str = await (await add.enqueue(1, 2)).result()  # noqa: F841  # E: assignment
    add.bind("x", 1)  # E: arg-type
    add.options(priority="high")  # E: arg-type
    add.options(prio=1)  # E: call-arg
    await app.enqueue_with("add", (1, 2), timeout="soon")  # E: arg-type
