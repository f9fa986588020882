"""``machine-storage``: the command line for operators and scripts.

Backups (also from cron), restores, CSV export and import, auto-migrations, the audit log and
its hash chain, serving an app; extensions add their own commands (``programs`` adds ``runs``
and ``worker``) through the ``machine_storage.cli`` entry point group: each entry point names a
function that takes the :class:`typer.Typer` application and adds commands to it.

Exit codes: 0 the operation succeeded, 1 it failed (the reason is one line on stderr), 2 the
command line was wrong (unknown option, missing argument, malformed URL). Progress goes to
stderr; stdout holds only the requested output (``--json``), so it can be piped.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

import typer

from storage._cli_alembic import migrate_app
from storage._cli_chain import audit_app
from storage._cli_common import EXIT_FAILED, HANDLED, describe
from storage._cli_data import backup_command, export_command, import_command, restore_command
from storage._cli_serve import serve_command

__all__ = ["ENTRY_POINT_GROUP", "main"]

ENTRY_POINT_GROUP = "machine_storage.cli"


_BUILTIN_COMMANDS = ("backup", "restore", "export", "import", "migrate", "audit", "serve")


def _build_app(*, extensions: bool = True) -> typer.Typer:
    """The ``machine-storage`` application with every command, extensions' included unless
    ``extensions`` is false."""
    app = typer.Typer(
        name="machine-storage",
        help="Back up, restore, export, import, migrate and inspect a machine-storage database.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
    app.command("export")(export_command)
    app.command("import")(import_command)
    app.add_typer(migrate_app, name="migrate")
    app.add_typer(audit_app, name="audit")
    app.command("serve")(serve_command)
    if extensions:
        for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            entry_point.load()(app)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``machine-storage`` with ``argv`` (default: the process's arguments) and exit."""
    args = list(argv) if argv is not None else sys.argv[1:]
    # An extension is loaded only for its own commands (and the top-level help): importing
    # it may define tables (programs does), which must not join the tables of a backup,
    # restore or export that reads them from the database.
    command = next((arg for arg in args if not arg.startswith("-")), None)
    app = _build_app(extensions=command not in _BUILTIN_COMMANDS)
    try:
        app(args=args, prog_name="machine-storage")
    except HANDLED as exc:
        typer.echo(f"machine-storage: error: {describe(exc)}", err=True)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
