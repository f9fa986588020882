"""Fixtures of the console's browser tests: the example machine app under uvicorn, and Debian's
Chromium driven by Playwright, which only ever talks to that server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.browser import chromium
from support.console import Console, console_page
from support.servers import Server, machine_app


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = f"sqlite:///{tmp_path_factory.mktemp('console') / 'machine.db'}"
    with machine_app(url) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (see :func:`support.browser.chromium`)."""
    with chromium() as browser:
        yield browser


@pytest.fixture
def console(browser: Any, server: Server) -> Iterator[Console]:
    """A fresh browser context as operator ``ada`` (see :func:`support.console.console_page`)."""
    with console_page(browser, str(server.client.base_url)) as console:
        yield console
