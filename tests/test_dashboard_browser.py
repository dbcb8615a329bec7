"""The dashboard in a real browser (issue 11): headless Chromium (Debian's
package) driven by Playwright, against a real server, worker and dashboard.
Skipped when Chromium or Playwright is missing, except in CI, where it fails."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

import aioqueue
from aioqueue.broker_admin import BrokerAdmin

from .conftest import running

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    import uvicorn
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # pragma: no cover
    uvicorn = None  # type: ignore[assignment]

if CHROMIUM is None or uvicorn is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium and playwright for the browser tests")
    pytest.skip("chromium or playwright missing", allow_module_level=True)

from aioqueue.dashboard import create_dashboard  # noqa: E402

TOKEN = "browser-test-token-0123"
QUEUE = "web"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard_url(redis_url: str) -> Iterator[str]:
    """The dashboard of its own App (its own event loop, in a thread)."""
    viewer = aioqueue.App(redis_url, queue=QUEUE)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_dashboard(viewer, token=TOKEN, open_app=True), host="127.0.0.1", port=port,
        log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "dashboard did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def _logged_in(browser: Browser, base: str) -> tuple[Page, list[str]]:
    """A page logged in to the dashboard; every request outside the
    dashboard's origin is aborted and recorded."""
    page = await browser.new_page()
    outside: list[str] = []

    async def only_local(route: Any) -> None:
        if urlsplit(route.request.url).netloc != urlsplit(base).netloc:
            outside.append(route.request.url)
            await route.abort()
        else:
            await route.continue_()

    await page.route("**/*", only_local)
    await page.goto(f"{base}/login")
    await page.fill("input[name=token]", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")
    return page, outside


def _app(make_app: Callable[..., aioqueue.App]) -> aioqueue.App:
    return make_app(queue=QUEUE, worker=aioqueue.WorkerSettings(
        lease_s=2, renew_interval_s=0.5, reaper_interval_s=0.1, block_s=0.2,
        heartbeat_interval_s=0.2))


async def test_browser_sees_a_queued_job_appear_finish_and_opens_its_page(
        make_app: Callable[..., aioqueue.App], dashboard_url: str, browser: Browser) -> None:
    app = _app(make_app)
    release = anyio.Event()

    @app.task
    async def slow_add(x: int, y: int) -> int:
        await release.wait()
        return x + y

    async with app:
        page, outside = await _logged_in(browser, dashboard_url)
        await page.goto(f"{dashboard_url}/queues/{QUEUE}")
        job = await slow_add.enqueue(20, 22)
        # the page refreshes itself: the new job appears without a reload
        await page.get_by_text(job.id).wait_for(timeout=15_000)
        async with running(app):
            await page.goto(f"{dashboard_url}/queues/{QUEUE}?state=running")
            await page.get_by_text(job.id).wait_for(timeout=15_000)
            release.set()
            assert await job.result(timeout=10) == 42
            await page.click(f"text={job.id}")
            status = page.locator("#job-status")
            await status.filter(has_text="succeeded").wait_for(timeout=15_000)
            assert (await page.locator("#job-result").inner_text()).strip() == "42"
            await page.goto(f"{dashboard_url}/workers")
            await page.get_by_text("alive").first.wait_for(timeout=15_000)
        assert outside == []


async def test_browser_replays_a_dead_job_and_pauses_a_queue(
        make_app: Callable[..., aioqueue.App], dashboard_url: str, browser: Browser) -> None:
    app = _app(make_app)
    fixed = False

    @app.task
    async def flaky() -> str:
        if not fixed:
            raise RuntimeError("broken until fixed")
        return "fixed"

    async with app, running(app):
        job = await flaky.enqueue()
        with pytest.raises(aioqueue.JobFailed):
            await job.result(timeout=10)
        page, _ = await _logged_in(browser, dashboard_url)
        await page.goto(f"{dashboard_url}/dead")
        await page.click(f"text={job.id}")
        await page.get_by_text("RuntimeError: broken until fixed").first.wait_for()
        fixed = True
        await page.click("button:has-text('Replay')")
        await page.locator("#job-status").filter(has_text="succeeded").wait_for(timeout=15_000)
        assert await job.result(timeout=5) == "fixed"

        await page.goto(f"{dashboard_url}/queues/{QUEUE}")
        await page.click("button:has-text('Pause')")
        await page.locator("h1 .badge", has_text="paused").wait_for()
        assert await BrokerAdmin(app.broker.lane, app.prefix).is_paused(QUEUE)
        await page.click("button:has-text('Resume')")
        await page.locator("button:has-text('Pause')").wait_for()
        assert not await BrokerAdmin(app.broker.lane, app.prefix).is_paused(QUEUE)


async def test_injected_script_argument_renders_as_text(
        make_app: Callable[..., aioqueue.App], dashboard_url: str, browser: Browser) -> None:
    app = _app(make_app)
    hostile = ('<script>window.__xss = 1; alert(1)</script>'
               "<img src=x onerror='window.__xss = 2'>{{7*7}}")

    @app.task
    async def store(text: str) -> None: ...

    async with app:
        job = await store.enqueue(hostile)
        page, outside = await _logged_in(browser, dashboard_url)
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error"
                else None)
        for path in (f"/job?id={job.id}", f"/queues/{QUEUE}"):
            await page.goto(dashboard_url + path)
            await page.wait_for_load_state("load")
        await page.goto(f"{dashboard_url}/job?id={job.id}")
        shown = await page.locator("#job-args").inner_text()
        assert hostile in shown  # literal text, braces and tags included
        assert await page.evaluate("window.__xss") is None
        assert dialogs == [] and outside == []
        assert not [e for e in console_errors if "Content Security Policy" in e]


async def test_post_without_the_csrf_token_is_refused(
        make_app: Callable[..., aioqueue.App], dashboard_url: str, browser: Browser) -> None:
    app = _app(make_app)
    async with app:
        page, _ = await _logged_in(browser, dashboard_url)
        status = await page.evaluate(
            """async () => (await fetch('/actions/pause', {method: 'POST',
                 headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                 body: 'queue=web'})).status""")
        assert status == 403
        assert not await BrokerAdmin(app.broker.lane, app.prefix).is_paused(QUEUE)
