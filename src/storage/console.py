"""The operator console: a web page at ``/console`` for the people at the machine.

The page is plain HTML, CSS and JavaScript modules shipped beside this module, in
``console_assets`` (no build step, no CDN, nothing fetched from elsewhere), so it works
offline. It talks only to the app's own HTTP API, which it discovers from ``/openapi.json``:
every change it makes is authorised, audited and conditional like any other client's (see
``docs/console.md``).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["mount_console"]

_ASSETS = Path(__file__).with_name("console_assets")
"""The folder of the console's files (``index.html``, the modules, the style sheet)."""

_NO_STORE = {"Cache-Control": "no-cache"}


def mount_console(app: FastAPI, path: str = "/console") -> None:
    """Serve the operator console on ``app`` at ``path``.

    ``GET {path}`` and ``GET {path}/`` answer the page; its scripts and style sheet are served
    under ``{path}/``. The page finds the API at the app's root (``root_path`` included).

    Args:
        app: the FastAPI app whose API the console uses.
        path: where to serve it; starts with ``/``, not ``/`` alone.

    Raises:
        ValueError: ``path`` does not start with ``/`` or is the root.
    """
    path = path.rstrip("/")
    if not path.startswith("/"):
        raise ValueError(f"the console's path must start with '/': {path!r}")
    template = (_ASSETS / "index.html").read_text(encoding="utf-8")

    async def page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        text = template.replace("{{base}}", html.escape(f"{root}{path}/")).replace(
            "{{api_root}}", html.escape(root)
        )
        return HTMLResponse(text, headers=_NO_STORE)

    for route in (path, f"{path}/", f"{path}/index.html"):
        app.add_route(route, page, methods=["GET"], include_in_schema=False)
    app.mount(path, StaticFiles(directory=_ASSETS, check_dir=True), name="console")
