"""The shop's tasks: typed arguments (a pydantic model), retries, a delay and a schedule."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

import aioqueue

app = aioqueue.App(queue="shop")  # the URL comes from AIOQUEUE_URL


class Order(BaseModel):
    id: int
    email: str
    total_cents: int = Field(ge=0)


class Receipt(BaseModel):
    order_id: int
    text: str


class PaymentGatewayDown(ConnectionError):
    """The payment provider did not answer (a transient error: retried)."""


@app.task
async def send_receipt(order: Order) -> Receipt:
    return Receipt(order_id=order.id, text=f"Thanks! {order.total_cents / 100:.2f} EUR paid.")


@app.task(max_tries=3, retry=aioqueue.RetryPolicy.fixed(30.0), retry_on=(ConnectionError,))
async def charge(ctx: aioqueue.JobContext, order_id: int) -> str:
    # the sandbox gateway is down for the first two attempts of every charge
    if ctx.attempt < 3:
        raise PaymentGatewayDown(f"gateway timeout (attempt {ctx.attempt})")
    return f"charged order {order_id}"


@app.task
async def refund(order_id: int, reason: str) -> None:
    raise ValueError(f"order {order_id} cannot be refunded: {reason}")


@app.task
async def remind_abandoned_cart(email: str) -> str:
    return f"reminder sent to {email}"


@app.task
async def nightly_report() -> int:
    return 42


app.schedule(nightly_report, cron="0 2 * * *", name="nightly")


async def place_order(order: Order) -> aioqueue.Job[Receipt]:
    """What the shop's web handler does: receipt now, cart reminder in a day."""
    await remind_abandoned_cart.options(delay=timedelta(days=1).total_seconds()).enqueue(
        order.email)
    return await send_receipt.enqueue(order)
