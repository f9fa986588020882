"""Starlette's ``TestClient``, imported without its httpx deprecation warning.

Starlette 1.x prefers the ``httpx2`` package for its test client and warns (once, at import)
when it falls back to ``httpx``. Both work; until the dev extra pins one, the warning is
silenced here, narrowly, so that ``filterwarnings = error`` does not fail the import.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="Using `httpx` with `starlette.testclient` is deprecated"
    )
    from starlette.testclient import TestClient

__all__ = ["TestClient"]
