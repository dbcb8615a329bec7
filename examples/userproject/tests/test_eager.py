"""The shop's quick unit tests in eager mode: no server, jobs run inline."""

from __future__ import annotations

import pydantic
import pytest
from shop.tasks import Order, Receipt, charge, refund, send_receipt

import aioqueue


async def test_receipt_inline(aioqueue_eager_app: aioqueue.App) -> None:
    job = await send_receipt.enqueue(Order(id=1, email="bo@example.com", total_cents=99))
    assert await job.status() is aioqueue.JobStatus.SUCCEEDED
    assert await job.result() == Receipt(order_id=1, text="Thanks! 0.99 EUR paid.")


async def test_retries_inline(aioqueue_eager_app: aioqueue.App) -> None:
    job = await charge.enqueue(2)
    assert await job.result() == "charged order 2"
    assert (await job.info()).attempt == 3


async def test_failure_has_the_workers_error_type(aioqueue_eager_app: aioqueue.App) -> None:
    job = await refund.enqueue(3, "lost")
    with pytest.raises(aioqueue.JobFailed) as failed:
        await job.result()
    assert failed.value.error_type == "ValueError"


async def test_validation_as_on_enqueue(aioqueue_eager_app: aioqueue.App) -> None:
    with pytest.raises(pydantic.ValidationError):
        await charge.enqueue("not a number")  # type: ignore[arg-type]
