"""What the ``machine-storage`` commands share: opening the database, finding the app's
tables, reporting progress and failures with the documented exit codes."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from storage import database
from storage._reflection import reflect_missing
from storage.errors import StorageError, translate

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "AppOption",
    "CommandFailed",
    "JsonOption",
    "ModelsOption",
    "describe",
    "emit_json",
    "import_target",
    "load_tables",
    "open_database",
    "progress",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        metavar="MODULE:APP",
        help="Import the app (and so its models) from this module, e.g. myapp.main:app.",
    ),
]
ModelsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--models",
        metavar="MODULE",
        help="Import this module for its SQLModel tables (repeatable).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


class CommandFailed(Exception):
    """The operation failed (exit code 1); the message is printed on stderr."""


def describe(exc: BaseException) -> str:
    """A message for an error, without SQL text or bound parameters."""
    if isinstance(exc, sa_exc.SQLAlchemyError):
        exc = translate(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def progress(message: str) -> None:
    """Tell the person at the terminal what is going on (stderr: stdout stays for data)."""
    typer.echo(message, err=True)


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout."""
    typer.echo(json.dumps(value, indent=2, default=str))


def open_database(url: str, *, must_exist: bool = True) -> None:
    """Make ``url`` the default database of this process.

    Raises:
        typer.BadParameter: the URL cannot be parsed (exit code 2).
        CommandFailed: a SQLite file that should exist does not.
    """
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise typer.BadParameter(f"not a database URL: {url!r}", param_hint="DB_URL") from exc
    if parsed.get_backend_name() == "sqlite":
        name = parsed.database or ""
        if must_exist and name not in ("", ":memory:") and not Path(name).is_file():
            raise CommandFailed(f"no SQLite database at {name}")
    database.set_database_url(url)
    # The engine exists from here on: an app imported later (--app) that configures another
    # database fails loudly instead of quietly taking over.
    database.get_engine()


def import_target(spec: str) -> Any:
    """Import ``module`` or ``module:attribute`` from the current directory or the path.

    Raises:
        CommandFailed: the module or the attribute cannot be found.
    """
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as uvicorn does: `myapp.main:app` from the project
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandFailed(f"cannot import {module_name!r} ({exc})") from exc
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise CommandFailed(f"module {module_name!r} has no attribute {attribute!r}") from None


def load_tables(app: str | None, models: list[str] | None, *, reflect: bool = True) -> str:
    """Put the app's tables on ``SQLModel.metadata``; returns where they came from.

    With ``--app`` or ``--models`` the modules are imported and their models define the
    tables. Without them, and when ``reflect`` is true, the tables are read from the
    database (every table it holds).
    """
    if app:
        import_target(app if ":" in app else f"{app}:app")
    for module in models or ():
        import_target(module)
    if app or models:
        return "models"
    if reflect:
        with database.get_engine().connect() as connection:
            reflect_missing(connection, SQLModel.metadata)
        return "database"
    return "none"


HANDLED: tuple[type[BaseException], ...] = (
    CommandFailed,
    StorageError,
    sa_exc.SQLAlchemyError,
    OSError,
    ValueError,
)
"""The errors that end a command with exit code 1 and a one-line message."""
