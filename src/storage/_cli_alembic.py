"""``machine-storage migrate init|baseline|revision|upgrade|downgrade|stamp|current|check``:
Alembic migrations (the ``alembic`` extra), for changes auto-migration refuses.

Each command is one call of :mod:`storage.alembic`; ``--dir`` is the migrations directory
(default ``migrations``), ``--db`` the database (default ``sqlalchemy.url`` of its
``alembic.ini``, else ``STORAGE_DATABASE_URL``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from types import ModuleType
from typing import Annotated, Any

import typer

from storage._cli_audit import migrate_app
from storage._cli_common import CommandFailed, JsonOption, ModelsOption, emit_json, progress

__all__ = ["migrate_app"]

DirOption = Annotated[str, typer.Option("--dir", metavar="DIR", help="The migrations directory.")]
DbOption = Annotated[
    str | None,
    typer.Option("--db", metavar="DB_URL", help="Default: alembic.ini's, else the app's."),
]
EmptyOption = Annotated[
    bool, typer.Option("--empty", help="Do not compare; write a blank revision.")
]
SqlOption = Annotated[
    bool, typer.Option("--sql", help="Print the SQL instead of running it (offline mode).")
]


@contextmanager
def _alembic() -> Iterator[ModuleType]:
    """:mod:`storage.alembic`, with Alembic's own errors reported as failed commands."""
    from alembic.util import CommandError

    from storage import alembic  # needs the alembic extra: MissingDependencyError otherwise

    try:
        # Alembic tells its progress on stdout; stdout stays for what the command prints.
        with redirect_stdout(sys.stderr):
            yield alembic
    except CommandError as exc:
        raise CommandFailed(str(exc)) from exc


def _run(call: Callable[[ModuleType], Any]) -> Any:
    with _alembic() as alembic:
        return call(alembic)


@migrate_app.command("init")
def init_command(directory: DirOption = "migrations", models: ModelsOption = None) -> None:
    """Write a migrations directory whose env.py imports the --models modules."""
    path = _run(lambda alembic: alembic.init(directory, models=models or ()))
    progress(f"wrote {path}: edit env.py's imports, then run `migrate baseline`")


@migrate_app.command("baseline")
def baseline_command(
    message: Annotated[str, typer.Option("-m", "--message")] = "baseline",
    directory: DirOption = "migrations",
    db: DbOption = None,
) -> None:
    """First revision of a database auto-migration made: writes it and stamps the database
    (refused, exit 1, while the database differs from the models)."""
    path = _run(lambda alembic: alembic.baseline(message, directory=directory, database_url=db))
    progress(f"wrote {path} and stamped the database")


@migrate_app.command("revision")
def revision_command(
    message: Annotated[str, typer.Option("-m", "--message")],
    empty: Annotated[
        bool, typer.Option("--empty", help="Do not compare; write a blank one.")
    ] = False,
    directory: DirOption = "migrations",
    db: DbOption = None,
) -> None:
    """Write a revision with the differences between the models and the database."""
    path = _run(
        lambda alembic: alembic.revision(
            message, autogenerate=not empty, directory=directory, database_url=db
        )
    )
    typer.echo(str(path))


@migrate_app.command("upgrade")
def upgrade_command(
    revision: Annotated[str, typer.Argument()] = "head",
    directory: DirOption = "migrations",
    db: DbOption = None,
    sql: SqlOption = False,
) -> None:
    """Upgrade the database to REVISION (default head)."""
    text = _run(
        lambda alembic: alembic.upgrade(revision, directory=directory, database_url=db, sql=sql)
    )
    if text:
        typer.echo(text)


@migrate_app.command("downgrade")
def downgrade_command(
    revision: Annotated[str, typer.Argument()],
    directory: DirOption = "migrations",
    db: DbOption = None,
    sql: SqlOption = False,
) -> None:
    """Downgrade the database to REVISION (e.g. -1)."""
    text = _run(
        lambda alembic: alembic.downgrade(revision, directory=directory, database_url=db, sql=sql)
    )
    if text:
        typer.echo(text)


@migrate_app.command("stamp")
def stamp_command(
    revision: Annotated[str, typer.Argument()] = "head",
    directory: DirOption = "migrations",
    db: DbOption = None,
) -> None:
    """Record REVISION as applied without running it (a database made another way)."""
    _run(lambda alembic: alembic.stamp(revision, directory=directory, database_url=db))


@migrate_app.command("current")
def current_command(
    directory: DirOption = "migrations", db: DbOption = None, as_json: JsonOption = False
) -> None:
    """The revision the database is at, and the newest revision of the scripts."""

    def both(alembic: ModuleType) -> tuple[Any, Any]:
        return alembic.current(directory=directory, database_url=db), alembic.heads(
            directory=directory
        )

    at, newest = _run(both)
    if as_json:
        emit_json({"current": list(at), "heads": list(newest)})
    else:
        typer.echo(f"current: {', '.join(at) or '(none)'}  heads: {', '.join(newest) or '(none)'}")


@migrate_app.command("check")
def check_command(directory: DirOption = "migrations", db: DbOption = None) -> None:
    """Exit 1 when the models differ from the database (a revision is missing)."""
    differences = _run(lambda alembic: alembic.check(directory=directory, database_url=db))
    for difference in differences:
        typer.echo(" ".join(str(part) for part in difference))
    if differences:
        raise typer.Exit(1)
    progress("the database matches the models")
