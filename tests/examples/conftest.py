"""Fixtures of the example tests: Debian's Chromium, driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.browser import chromium


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless Chromium (see :func:`support.browser.chromium`)."""
    with chromium() as browser:
        yield browser
