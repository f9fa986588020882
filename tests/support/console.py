"""A page of the operator console in a browser, for the console's browser tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from support.servers import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "console"
"""Where the screenshots go (gitignored), for review."""


class Console:
    """A page of the console at 1280x800, with what went wrong in it."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        self.elsewhere: list[str] = []

    def open(self, route: str) -> Any:
        self.page.goto(f"{self.base}/console/{route}")
        self.page.locator("main h1").first.wait_for()
        return self.page

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def fits(self) -> bool:
        """No horizontal scrolling at 1280 px."""
        width: int = self.page.evaluate("document.documentElement.scrollWidth")
        return width <= 1280

    def small_targets(self) -> list[str]:
        """Visible buttons, links styled as buttons and form controls under 44 px high."""
        found: list[str] = self.page.evaluate(
            """() => [...document.querySelectorAll(
                  "button, .button, select, input:not([type=checkbox]), nav a")]
                .filter((item) => item.offsetParent !== null)
                .filter((item) => item.getBoundingClientRect().height < 44)
                .map((item) => item.outerHTML.slice(0, 80))"""
        )
        return found


@contextmanager
def console_page(
    browser: Any, base: str, *, user: str = "ada", token: str | None = None
) -> Iterator[Console]:
    """A fresh browser context on the console at ``base`` as operator ``user`` (with a bearer
    ``token`` when given); fails on a script error or on any request to another origin (which
    is aborted)."""
    base = base.rstrip("/")
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    script = f"sessionStorage.setItem('console.user', {json.dumps(user)});"
    if token is not None:
        script += f"sessionStorage.setItem('console.token', {json.dumps(token)});"
    context.add_init_script(script)
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
