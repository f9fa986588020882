"""``machine-storage serve``: run an app with uvicorn and defaults fit for a machine."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

__all__ = ["serve_command"]


def serve_command(
    app: Annotated[str, typer.Argument(metavar="MODULE:APP", help="e.g. myapp.main:app")],
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Server processes.")] = 1,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Sets STORAGE_DATABASE_URL for the app."),
    ] = None,
    reload: Annotated[bool, typer.Option("--reload", help="Restart on code changes.")] = False,
    factory: Annotated[
        bool,
        typer.Option("--factory", help="MODULE:APP is a function that returns the app."),
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Serve a FastAPI app (uvicorn). Listens on 127.0.0.1 unless told otherwise."""
    import uvicorn

    if database_url is not None:
        os.environ["STORAGE_DATABASE_URL"] = database_url  # read by every worker process
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        factory=factory,
        log_level=log_level,
        timeout_graceful_shutdown=10,
    )
