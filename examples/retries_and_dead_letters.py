"""Retries and dead letters: backoff, retry_on/fail_on, Retry(delay=), inspect and replay.

Runs as written (a worker in this process; the server at AIOQUEUE_URL or an
embedded one): ``python examples/retries_and_dead_letters.py``
"""

from __future__ import annotations

import anyio

import aioqueue
from aioqueue.testing import local_server

app = aioqueue.App(queue="retries-example")
feed_is_up = False  # stands in for an outside service that comes back later


@app.task(max_tries=4, retry=aioqueue.RetryPolicy.exponential(0.05, cap_s=1.0),
          retry_on=(ConnectionError,))
async def fetch_price(symbol: str) -> float:
    """Retried on ConnectionError only, waiting 0.05 s, 0.1 s, 0.2 s (with jitter)."""
    raise ConnectionError(f"price feed for {symbol} unreachable")


@app.task(max_tries=3)
async def poll_export(ctx: aioqueue.JobContext, export_id: str) -> str:
    """Asks for another attempt itself while the export is not ready."""
    if ctx.attempt < 3:
        raise aioqueue.Retry(delay=0.05)
    return f"export {export_id} ready after {ctx.attempt} attempts"


@app.task(max_tries=5, fail_on=(ValueError,))
async def parse_invoice(text: str) -> int:
    """A ValueError is a bug in the input, not a hiccup: it fails at once."""
    if not feed_is_up:
        raise ValueError(f"not an invoice: {text!r}")
    return len(text)


async def main() -> None:
    global feed_is_up
    async with app:
        worker = aioqueue.Supervisor(app, concurrency=10)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            print(await (await poll_export.enqueue("q3")).result(timeout=10))
            for job in (await fetch_price.enqueue("ACME"), await parse_invoice.enqueue("??")):
                try:
                    await job.result(timeout=10)
                except aioqueue.JobFailed as failed:
                    print(f"{job.id} failed after {failed.attempts} attempt(s): "
                          f"{failed.error_type}: {failed.error_message}")
            dead = await app.dead_letters()
            print(f"dead letters: {sorted(info.task for info in dead)}")
            for info in dead:
                print(f"  {info.task}: errors by attempt {[e['type'] for e in info.errors]}")
            feed_is_up = True  # the input is fixed: give the invoice another go
            invoice = next(info.id for info in dead if info.task == parse_invoice.name)
            await app.replay_dead([invoice])
            print(f"replayed invoice: {await app.job(invoice).result(timeout=10)}")
            await app.purge_dead()
            worker.request_shutdown()


if __name__ == "__main__":
    with local_server() as url:
        app.url = url
        anyio.run(main)
