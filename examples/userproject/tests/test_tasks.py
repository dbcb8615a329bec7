"""The shop's tests: a real throw-away server and worker, through aioqueue.testing only."""

from __future__ import annotations

import pydantic
import pytest
from shop.tasks import Order, Receipt, charge, nightly_report, place_order, refund, send_receipt

import aioqueue
from aioqueue.testing import advance, drain, run_worker, trigger_schedule

ORDER = Order(id=7, email="ada@example.com", total_cents=1250)


async def test_receipt_is_sent_for_an_order(aioqueue_app: aioqueue.App) -> None:
    job = await place_order(ORDER)
    outcomes = await drain(aioqueue_app)
    assert outcomes.of(send_receipt).results() == [
        Receipt(order_id=7, text="Thanks! 12.50 EUR paid.")]
    assert await job.result() == Receipt(order_id=7, text="Thanks! 12.50 EUR paid.")


async def test_result_awaited_from_a_running_worker(aioqueue_app: aioqueue.App) -> None:
    async with run_worker(aioqueue_app, concurrency=5):
        job = await send_receipt.enqueue(ORDER)
        receipt = await job.result(timeout=10)
    assert receipt.order_id == 7


async def test_charge_is_retried_until_the_gateway_answers(aioqueue_app: aioqueue.App) -> None:
    job = await charge.enqueue(7)
    outcomes = await drain(aioqueue_app)  # the 30 s retry backoffs are skipped
    assert outcomes.results() == ["charged order 7"]
    info = await job.info()
    assert info.attempt == 3
    assert [e["type"] for e in info.errors] == ["PaymentGatewayDown", "PaymentGatewayDown"]


async def test_failed_refund_reports_the_error(aioqueue_app: aioqueue.App) -> None:
    job = await refund.enqueue(7, "already shipped")
    (outcome,) = await drain(aioqueue_app)
    assert outcome.status is aioqueue.JobStatus.FAILED
    with pytest.raises(aioqueue.JobFailed) as failed:
        await job.result()
    assert failed.value.error_type == "ValueError"
    assert "already shipped" in failed.value.error_message


async def test_cart_reminder_runs_a_day_later(aioqueue_app: aioqueue.App) -> None:
    await place_order(ORDER)
    first = await drain(aioqueue_app)
    assert [o.task for o in first] == ["send_receipt"]  # the reminder is not due yet
    await advance(aioqueue_app, 23 * 3600)
    assert await drain(aioqueue_app) == []
    await advance(aioqueue_app, 3600)
    later = await drain(aioqueue_app)
    assert later.results() == ["reminder sent to ada@example.com"]


async def test_nightly_report_schedule(aioqueue_app: aioqueue.App) -> None:
    job = await trigger_schedule(aioqueue_app, "nightly")
    outcomes = await drain(aioqueue_app)
    assert outcomes.of(nightly_report).results() == [42]
    assert job.id.startswith("cron.nightly.")


async def test_bad_arguments_are_refused_before_anything_is_written(
    aioqueue_app: aioqueue.App,
) -> None:
    with pytest.raises(pydantic.ValidationError):
        await send_receipt.enqueue(
            {"id": 1, "email": "x@example.com", "total_cents": -5})  # type: ignore[arg-type]
    assert await drain(aioqueue_app) == []
