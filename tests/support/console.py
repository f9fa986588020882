"""A page of the operator console in a browser, for the console's browser tests."""

from __future__ import annotations

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
