"""Fixtures of the console's browser tests: the example machine app under uvicorn, and Debian's
Chromium driven by Playwright, which only ever talks to that server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.browser import chromium
from support.console import Console
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
    """A fresh browser context as operator ``ada``; fails the test on a script error or on any
    request to another origin (which is aborted)."""
    base = str(server.client.base_url).rstrip("/")
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    context.add_init_script("sessionStorage.setItem('console.user', 'ada')")
    page = context.new_page()
    console = Console(page, base)

    def guard(route: Any) -> None:
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:
            console.elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.on("pageerror", lambda error: console.errors.append(str(error)))
    # Chrome logs each 4xx answer as a console error; those the tests provoke are expected.
    page.on(
        "console",
        lambda message: (
            console.errors.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        yield console
    finally:
        context.close()
    assert not console.elsewhere, f"requests to other origins: {console.elsewhere}"
    assert not console.errors, f"errors in the page: {console.errors}"
