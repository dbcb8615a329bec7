"""The dashboard over HTTP (issue 11): auth, CSRF, read-only mode, escaping,
security headers and every page, against a real server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import anyio
import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")
from starlette.testclient import TestClient

from aioqueue.dashboard import create_dashboard

from . import ops_app

TOKEN = "t0ps3cret-t0ps3cret"
HOSTILE = "<script>alert(1)</script>{{7*7}}"


def _seed(url: str) -> dict[str, str]:
    app = ops_app.app
    app.url = url

    async def run() -> dict[str, str]:
        async with app:
            hostile = await ops_app.explode.enqueue(HOSTILE)
            plain = await ops_app.add.enqueue(1, 2)
            return {"hostile": hostile.id, "plain": plain.id}

    return anyio.run(run)


@pytest.fixture
def ids(redis_url: str) -> dict[str, str]:
    """Jobs enqueued before the dashboard opens the app (one loop at a time)."""
    return _seed(redis_url)


@pytest.fixture
def client(redis_url: str, ids: dict[str, str]) -> Iterator[TestClient]:
    ops_app.app.url = redis_url
    dashboard = create_dashboard(ops_app.app, token=TOKEN, open_app=True)
    with TestClient(dashboard, base_url="http://127.0.0.1:8080") as c:
        yield c


def _login(client: TestClient) -> None:
    response = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_dashboard_refuses_to_start_without_an_auth_choice() -> None:
    with pytest.raises(ValueError, match="auth=None"):
        create_dashboard(ops_app.app)
    with pytest.raises(ValueError, match="16 characters"):
        create_dashboard(ops_app.app, token="short")


def test_pages_need_login_and_actions_need_auth(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("/login")
    assert client.post("/actions/pause", data={"queue": "ops"}).status_code == 401
    wrong = client.post("/login", data={"token": "wrong-wrong-wrong-wrong"})
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    _login(client)
    assert client.get("/").status_code == 200
    cookie = client.cookies.get("aioqueue_dashboard")
    assert cookie and TOKEN not in cookie
    client.cookies.clear()
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_every_page_renders_and_carries_security_headers(
        client: TestClient, ids: dict[str, str]) -> None:
    _login(client)
    for path in ["/", "/queues/ops", "/queues/ops?state=scheduled", "/queues/ops?state=running",
                 "/queues/ops?state=dead", f"/job?id={ids['plain']}", "/workers",
                 "/schedules", "/dead", "/static/dashboard.css"]:
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
    assert client.get("/job?id=nope").status_code == 400
    assert client.get("/queues/bad%20name").status_code == 400


def test_job_data_is_escaped_everywhere(client: TestClient, ids: dict[str, str]) -> None:
    _login(client)
    for path in [f"/job?id={ids['hostile']}", "/queues/ops"]:
        html = client.get(path).text
        assert "<script>alert(1)</script>" not in html
    html = client.get(f"/job?id={ids['hostile']}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;{{7*7}}" in html
    assert "49" not in html.split('id="job-args"')[1].split("</pre>")[0]


def test_actions_need_the_csrf_token_and_same_origin(client: TestClient) -> None:
    _login(client)
    token = _csrf(client.get("/queues/ops").text)
    refused = client.post("/actions/pause", data={"queue": "ops"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    cross = client.post("/actions/pause", data={"queue": "ops", "csrf": token},
                        headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    other = client.post("/actions/pause", data={"queue": "ops", "csrf": token},
                        headers={"Origin": "http://evil.example"})
    assert other.status_code == 403
    assert client.get("/actions/pause").status_code == 405
    assert "paused" not in client.get("/queues/ops").text.split("<h1>")[1].split("</h1>")[0]
    done = client.post("/actions/pause", data={"queue": "ops", "csrf": token},
                       headers={"Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 200  # followed the redirect to the queue page
    assert 'class="badge warn">paused' in done.text


def test_read_only_dashboard_shows_no_actions_and_refuses_posts(redis_url: str) -> None:
    ops_app.app.url = redis_url
    dashboard = create_dashboard(ops_app.app, auth=None, read_only=True, open_app=True)
    with TestClient(dashboard) as client:
        html = client.get("/queues/ops").text
        assert "/actions/" not in html and "read-only" in html
        assert 'name="csrf"' not in html
        refused = client.post("/actions/pause", data={"queue": "ops", "csrf": "any"})
        assert refused.status_code == 403 and "read-only" in refused.text


def test_host_auth_callable_decides_who_may_look(redis_url: str) -> None:
    async def auth(request: object) -> str | None:
        headers = getattr(request, "headers", {})
        return "alice" if headers.get("x-user") == "alice" else None

    ops_app.app.url = redis_url
    dashboard = create_dashboard(ops_app.app, auth=auth, open_app=True)
    with TestClient(dashboard) as client:
        assert client.post("/actions/pause", data={"queue": "ops"}).status_code == 401
        assert client.get("/workers", headers={"x-user": "alice"}).status_code == 200


def test_purge_from_the_dashboard_needs_the_confirmation_box(
        client: TestClient) -> None:
    _login(client)
    token = _csrf(client.get("/queues/ops").text)
    unconfirmed = client.post("/actions/purge", data={"queue": "ops", "csrf": token})
    assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.text
    client.post("/actions/purge", data={"queue": "ops", "csrf": token, "confirm": "yes"})
    assert "0 of 0 waiting job(s)" in client.get("/queues/ops").text


def test_dashboard_command_refuses_to_serve_unprotected(
        redis_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from aioqueue.cli import main

    monkeypatch.delenv("AIOQUEUE_DASHBOARD_TOKEN", raising=False)
    assert main(["dashboard", "tests.ops_app:app", "--url", redis_url]) == 2
    assert "AIOQUEUE_DASHBOARD_TOKEN" in capsys.readouterr().err
    assert main(["dashboard", "tests.ops_app:app", "--url", redis_url, "--no-auth",
                 "--bind", "0.0.0.0:8080"]) == 2
    assert "loopback" in capsys.readouterr().err


def _calls(url: str) -> dict[str, int]:
    import redis

    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def _commands_for(client: TestClient, url: str, path: str) -> dict[str, int]:
    before = _calls(url)
    assert client.get(path).status_code == 200
    after = _calls(url)
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0) > 0}


def test_every_page_costs_the_same_commands_whatever_the_queue_size(redis_url: str) -> None:
    ops_app.app.url = redis_url
    paths = ["/", "/queues/ops", "/queues/ops?state=dead", "/workers", "/dead"]

    def measure(jobs: int) -> dict[str, dict[str, int]]:
        async def seed() -> None:
            async with ops_app.app:
                await ops_app.add.enqueue_many([ops_app.add.s(n, n) for n in range(jobs)])

        anyio.run(seed)
        with TestClient(create_dashboard(ops_app.app, auth=None, open_app=True)) as client:
            client.get("/")  # connections made
            return {path: _commands_for(client, redis_url, path) for path in paths}

    small = measure(100)
    large = measure(5000)  # 5,100 waiting jobs now
    assert large == small, (small, large)
    for path, cost in large.items():
        assert not {"keys", "scan", "smembers"} & set(cost), (path, cost)
    # a page of 50 jobs: one HMGET per row, never one per job in the queue
    assert large["/queues/ops"]["hmget"] == 50
    # plus the hour's 60 per-minute counters and a few counts
    assert sum(large["/queues/ops"].values()) < 150, large["/queues/ops"]


def test_queue_page_shows_concurrency_per_key_and_changes_the_limit(redis_url: str) -> None:
    """Flow control on the queue page: the task's limit per key, running and
    waiting jobs per key (held back at the limit), and the operator's form
    that changes the limit at runtime."""
    async def seed() -> None:
        async with ops_app.app:
            for _ in range(3):
                await ops_app.export.enqueue("acme")
            async with ops_app.app.broker.blocking_client("t") as lane:
                await ops_app.app.broker.claim(lane, "ops", 10, 60_000, "w1")

    ops_app.app.url = redis_url
    anyio.run(seed)
    with TestClient(create_dashboard(ops_app.app, token=TOKEN, open_app=True),
                    base_url="http://127.0.0.1:8080") as client:
        _check_concurrency_section(client)


def _check_concurrency_section(client: TestClient) -> None:
    _login(client)
    html = client.get("/queues/ops").text
    section = html.split('<section class="flow">')[1].split("</section>")[0]
    assert "Max running per key" in section and "acme" in section and "held back" in section
    rows = re.findall(r"<tr><td>export</td><td>acme</td>(.*?)</tr>", section, re.S)
    assert rows and re.findall(r'class="num">([^<]+)<', rows[0])[:3] == ["2", "1", "2"]
    token = _csrf(html)
    done = client.post("/actions/concurrency", data={
        "queue": "ops", "task": "export", "max_concurrency": "5", "csrf": token},
        headers={"Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 200
    section = done.text.split('<section class="flow">')[1].split("</section>")[0]
    assert "held back" not in section
    rows = re.findall(r"<tr><td>export</td><td>acme</td>(.*?)</tr>", section, re.S)
    assert re.findall(r'class="num">([^<]+)<', rows[0])[:3] == ["2", "1", "5"]
    bad = client.post("/actions/concurrency", data={
        "queue": "ops", "task": "export", "max_concurrency": "lots", "csrf": token},
        headers={"Sec-Fetch-Site": "same-origin"})
    assert "must be a count" in bad.text


def test_overview_counts_grouped_jobs_as_waiting_and_shows_them_held(redis_url: str) -> None:
    # Given 3 jobs waiting in a concurrency group and 1 in the priority lists
    async def seed() -> None:
        async with ops_app.app:
            for customer in ("acme", "acme", "initech"):
                await ops_app.export.enqueue(customer)
            await ops_app.add.enqueue(1, 2)

    ops_app.app.url = redis_url
    anyio.run(seed)
    with TestClient(create_dashboard(ops_app.app, token=TOKEN, open_app=True),
                    base_url="http://127.0.0.1:8080") as client:
        _login(client)
        html = client.get("/").text
    # Then the ops row counts 4 waiting: p0 1 and held 3
    row = re.findall(r'<tr data-queue="ops">.*?</tr>', html, re.S)
    assert row, html
    assert '<td class="num waiting">4</td>' in row[0]
    assert "p0: 1" in row[0] and "held: 3" in row[0]
