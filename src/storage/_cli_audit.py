"""``machine-storage audit`` and ``machine-storage migrate``: the audit log and the additive
auto-migrations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from datetime import datetime
from typing import Annotated, Any

import typer
from sqlalchemy import func
from sqlmodel import col, select

from storage import changes, database
from storage._cli_common import (
    AppOption,
    JsonOption,
    ModelsOption,
    emit_json,
    load_tables,
    open_database,
    progress,
)
from storage.auditor import AuditLog, as_utc
from storage.migrations import MigrationPlan, apply_sqlmodel_migrations, plan_sqlmodel_migrations
from storage.uniqueness import make_unique_live

__all__ = ["audit_command", "migrate_app"]

migrate_app = typer.Typer(
    help="Additive auto-migrations: create missing tables, columns and indexes.",
    no_args_is_help=True,
)

OptionalUrl = Annotated[
    str | None,
    typer.Argument(
        metavar="[DB_URL]", help="Default: the app's own (STORAGE_DATABASE_URL or its bootstrap)."
    ),
]


def _plan_json(plan: MigrationPlan) -> dict[str, Any]:
    return {
        "safe": plan.is_safe,
        "steps": [{"kind": s.kind, "table": s.table, "name": s.name} for s in plan.steps],
        "problems": [
            {"table": p.table, "column": p.column, "reason": p.reason} for p in plan.problems
        ],
    }


def _prepare(db_url: str | None, app: str | None, models: list[str] | None) -> None:
    if not (app or models):
        raise typer.BadParameter("pass --app or --models: migrations follow the models")
    if db_url is not None:
        open_database(db_url, must_exist=False)
    load_tables(app, models, reflect=False)


@migrate_app.command("plan")
def migrate_plan(
    db_url: OptionalUrl = None,
    app: AppOption = None,
    models: ModelsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what `migrate apply` would change; exit 1 when it would refuse (a problem)."""
    _prepare(db_url, app, models)
    plan = plan_sqlmodel_migrations()
    if as_json:
        emit_json(_plan_json(plan))
    else:
        for step in plan.steps:
            typer.echo(str(step))
        for problem in plan.problems:
            typer.echo(f"refused: {problem}")
        if plan.is_empty:
            progress("the database matches the models")
    if not plan.is_safe:
        raise typer.Exit(1)


@migrate_app.command("apply")
def migrate_apply(
    db_url: OptionalUrl = None,
    app: AppOption = None,
    models: ModelsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply the additive changes in one transaction; nothing changes when one is refused."""
    _prepare(db_url, app, models)
    plan = apply_sqlmodel_migrations()
    if as_json:
        emit_json(_plan_json(plan))
    for step in plan.steps:
        progress(f"applied: {step}")
    if plan.is_empty:
        progress("the database matches the models")


@migrate_app.command("live-unique")
def migrate_live_unique(
    db_url: OptionalUrl = None,
    app: AppOption = None,
    models: ModelsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Let soft-deleted rows free their unique values in a database made before: plain unique
    constraints of soft-delete tables become unique indexes over live rows (PostgreSQL, SQLite;
    nothing to do on MariaDB). Run it with the app stopped."""
    _prepare(db_url, app, models)
    done = make_unique_live()
    if as_json:
        emit_json({"done": done})
    for line in done:
        progress(line)
    if not done:
        progress("nothing to change")


def _entry(row: AuditLog | changes.ChangeEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "timestamp": as_utc(row.timestamp).isoformat(),
        "component": row.component,
        "record_id": row.record_id,
        "operation": row.operation,
        "actor": row.actor,
        "before": row.before,
        "after": row.after,
    }


def _line(entry: dict[str, Any]) -> str:
    return (
        f"{entry['id']:>8}  {entry['timestamp']}  {entry['component']}/{entry['record_id']}  "
        f"{entry['operation']}  by {entry['actor']}"
    )


def _query(
    components: list[str],
    actor: str | None,
    operations: list[str],
    record_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    statement = select(AuditLog)
    if components:
        statement = statement.where(col(AuditLog.component).in_(components))
    if operations:
        statement = statement.where(col(AuditLog.operation).in_(operations))
    if actor is not None:
        statement = statement.where(AuditLog.actor == actor)
    if record_id is not None:
        statement = statement.where(AuditLog.record_id == record_id)
    if since is not None:
        statement = statement.where(AuditLog.timestamp >= as_utc(since))
    if until is not None:
        statement = statement.where(AuditLog.timestamp <= as_utc(until))
    statement = statement.order_by(col(AuditLog.id).desc()).limit(limit)
    with database.read_session() as session:
        return [_entry(row) for row in session.exec(statement).all()]


def audit_command(
    db_url: Annotated[str, typer.Argument(metavar="DB_URL", help="SQLAlchemy database URL.")],
    component: Annotated[
        list[str] | None, typer.Option("--component", help="Only this component (repeatable).")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    operation: Annotated[
        list[str] | None, typer.Option("--operation", help="Only this operation (repeatable).")
    ] = None,
    record_id: Annotated[str | None, typer.Option("--record-id", help="Only this record.")] = None,
    since: Annotated[datetime | None, typer.Option("--since", help="From this time (UTC).")] = None,
    until: Annotated[
        datetime | None, typer.Option("--until", help="Up to this time (UTC).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows.")] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print new entries as they commit.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List the audit log, newest first; with --follow, oldest first, then live.

    With --json: a JSON array; with --json --follow: one JSON object per line.
    """
    open_database(db_url)
    components, operations = component or [], operation or []
    entries = _query(components, actor, operations, record_id, since, until, limit)
    if follow:
        entries.reverse()
    if as_json and not follow:
        emit_json(entries)
        return
    for entry in entries:
        typer.echo(json_line(entry) if as_json else _line(entry))
    if follow:
        last = entries[-1]["id"] if entries else _last_id()
        asyncio.run(_follow(last, components, operations, actor, record_id, as_json))


def json_line(entry: dict[str, Any]) -> str:
    """One audit entry as one line of JSON."""
    return json.dumps(entry, separators=(",", ":"), default=str)


def _last_id() -> int:
    with database.read_session() as session:
        return int(session.exec(select(func.coalesce(func.max(AuditLog.id), 0))).one() or 0)


async def _follow(
    after: int,
    components: list[str],
    operations: list[str],
    actor: str | None,
    record_id: str | None,
    as_json: bool,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stopped = asyncio.ensure_future(stop.wait())
    events = changes.subscribe(after=after, components=components, operations=operations)
    try:
        while True:
            following = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({following, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if following not in done:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following  # the generator is closed only once it stops running
                return
            event = following.result()
            if (actor is None or event.actor == actor) and (
                record_id is None or event.record_id == record_id
            ):
                entry = _entry(event)
                typer.echo(json_line(entry) if as_json else _line(entry))
    finally:
        stopped.cancel()
        await events.aclose()  # type: ignore[attr-defined]
