"""The aioqueue pytest plugin, registered through the ``pytest11`` entry point.

Fixtures (all opt-in: nothing starts unless a test asks for it):

* ``aioqueue_server``: a throw-away server for the whole session (the same
  embedded default as ``aioqueue dev``);
* ``aioqueue_url``: its URL, emptied before each test;
* ``aioqueue_app``: your app, connected to that server for one test; say
  which app in your pytest configuration (``aioqueue_app = "myproject.tasks:app"``)
  or override the ``aioqueue_target_app`` fixture;
* ``aioqueue_eager_app``: your app in eager mode (no server).

The async fixtures need pytest-asyncio (``pip install 'aioqueue[testing]'``).
Disable the plugin with ``-p no:aioqueue``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..app import App
    from ..server import ServerProcess

INI_APP = "aioqueue_app"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI_APP, "MODULE:ATTRIBUTE of the aioqueue App that the aioqueue_app "
                  "fixture connects to a throw-away server", default="")


@pytest.fixture(scope="session")
def aioqueue_server() -> Iterator[ServerProcess]:
    """A throw-away server for the session, on a free loopback port."""
    from .server import embedded_server

    with embedded_server() as server:
        yield server


@pytest.fixture
def aioqueue_url(aioqueue_server: ServerProcess) -> str:
    """The session server's URL, emptied for this test."""
    from .server import flush

    flush(aioqueue_server.url)
    return aioqueue_server.url


@pytest.fixture
def aioqueue_target_app(request: pytest.FixtureRequest) -> App:
    """The app the ``aioqueue_app`` fixture connects: named by the
    ``aioqueue_app`` ini option. Override this fixture to build it yourself."""
    from ..cli_common import load_app

    target = str(request.config.getini(INI_APP) or "").strip()
    if len(target) >= 2 and target[0] == target[-1] and target[0] in "\"'":
        target = target[1:-1]  # an ini file keeps the quotes TOML would take off
    if not target:
        pytest.fail(
            "the aioqueue_app fixture needs to know your app: set "
            "'aioqueue_app = \"myproject.tasks:app\"' in your pytest configuration, "
            "or override the aioqueue_target_app fixture", pytrace=False)
    try:
        return load_app(target)
    except Exception as exc:
        pytest.fail(f"aioqueue_app = {target!r}: {exc}", pytrace=False)


def _async_fixture(fn: Any) -> Any:
    """``pytest_asyncio.fixture``, or a fixture that says what to install."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - only without pytest-asyncio
        def missing() -> Any:
            pytest.fail(f"the {fn.__name__} fixture needs pytest-asyncio: "
                        "pip install 'aioqueue[testing]'", pytrace=False)

        return pytest.fixture(name=fn.__name__)(missing)
    return pytest_asyncio.fixture(fn)


@_async_fixture
async def aioqueue_app(aioqueue_target_app: App, aioqueue_url: str) -> AsyncIterator[App]:
    """Your app, connected to the throw-away server (emptied first)."""
    from ..integrations._holder import held_open
    from .server import connected

    async with held_open(connected(aioqueue_target_app, aioqueue_url)) as app:
        yield app


@_async_fixture
async def aioqueue_eager_app(aioqueue_target_app: App) -> AsyncIterator[App]:
    """Your app in eager mode: enqueued jobs run inline, no server."""
    from ..integrations._holder import held_open
    from .eager import eager

    async with held_open(eager(aioqueue_target_app)) as app:
        yield app
