"""``machine-storage audit``: list the audit log (``audit DB_URL``, the default, also
``audit list DB_URL``) or check its hash chain (``audit verify DB_URL``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from storage._cli_audit import audit_command
from storage._cli_common import JsonOption, emit_json, open_database, progress
from storage._verification import DEFAULT_PAGE_SIZE, ChainReport, verify_chain

__all__ = ["audit_app", "verify_command"]


class _ListByDefault(TyperGroup):
    """A group whose first argument, when it names no command, is the ``list`` command's:
    ``audit DB_URL --json`` stays what it was before ``audit verify`` existed."""

    # The context is typer's own copy of click's, which it keeps private.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["list", *args]
        return super().parse_args(ctx, args)


audit_app = typer.Typer(
    cls=_ListByDefault,
    help="The audit log: list it (the default: audit DB_URL ...), or verify its hash chain.",
    no_args_is_help=True,
)
audit_app.command("list")(audit_command)


def _lines(report: ChainReport) -> list[str]:
    older = f"; {report.unchained} older rows without hash" if report.unchained else ""
    if not report.ok:
        return [
            f"broken at row {report.broken_at} ({report.problem}): {report.detail}",
            f"{report.checked} rows verified before it{older}",
        ]
    if report.starts_at is None:
        return [f"ok: no chained rows yet{older}"]
    return [
        f"ok: {report.checked} rows chained from id {report.starts_at} to id "
        f"{report.last_id}{older}",
        f"head: {report.head}",
    ]


@audit_app.command("verify")
def verify_command(
    db_url: Annotated[str, typer.Argument(metavar="DB_URL", help="SQLAlchemy database URL.")],
    page_size: Annotated[
        int, typer.Option("--page-size", min=1, help="Rows read per query.")
    ] = DEFAULT_PAGE_SIZE,
    as_json: JsonOption = False,
) -> None:
    """Check the audit log's hash chain from its first row to its head; exit 1 when broken.

    Prints the head (the last row's hash): keep it elsewhere, and a later run that prints
    the same hash for that row shows the log up to it was not rewritten as a whole.
    """
    open_database(db_url)
    progress("verifying the audit chain ...")
    report = verify_chain(page_size=page_size)
    if as_json:
        emit_json(report.model_dump())
    else:
        for line in _lines(report):
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)
