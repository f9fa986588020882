"""``build_db_router()``: database-wide routes under ``/db``.

Health, liveness and readiness, the audit log and its hash chain, the schema diagram, CSV
export and import, and SQLite backup and restore. The work is done in :mod:`storage.backup`,
:mod:`storage.restore`, :mod:`storage.export`, :mod:`storage.importer`, :mod:`storage.diagram`
and :mod:`storage.verification`; this module only maps it to HTTP. Storage errors become their
status codes through :class:`storage.http.StorageRoute`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from storage import backup, database, diagram, export, importer, restore
from storage.auditor import AuditLog, audit_filters, newest_first
from storage.errors import ValidationError
from storage.http import (
    MAX_OFFSET,
    AdminRoute,
    RouteAuth,
    StorageRoute,
    actor_dependency,
    cancelled_on_disconnect,
    file_upload_body,
    limit_body,
    optional_actor,
    uploaded_file,
)
from storage.importer import ImportMode, ImportSummary
from storage.openapi import TOTAL_COUNT, file_response
from storage.readiness import Liveness, Readiness, SchemaCheck, backend_name, check_reachable
from storage.restore import RestoreSummary
from storage.streams import add_change_stream, feed_lifespan
from storage.uploads import ImportLimits
from storage.verification import ChainReport, verify_chain

__all__ = ["AuditEntry", "HealthStatus", "Liveness", "Readiness", "build_db_router"]

DEFAULT_MAX_UPLOAD_BYTES = 512 << 20
_MULTIPART_SLACK = 64 << 10  # multipart framing around the file itself
_CHUNK = 1 << 16
_ZIP, _SQLITE, _SVG = "application/zip", "application/x-sqlite3", "image/svg+xml"
_NOT_READY = "Not ready: the database cannot be reached, or its tables differ from the models"


class HealthStatus(BaseModel):
    """``GET /db/health``: the database answered a query."""

    status: Literal["ok"] = "ok"
    backend: str


class AuditEntry(BaseModel):
    """One row of the audit log."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    timestamp: datetime
    component: str
    record_id: str
    operation: str
    actor: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def build_db_router(
    *,
    audit_default_limit: int = 100,
    audit_max_limit: int = 1000,
    auth: RouteAuth | None = None,
    max_restore_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_import_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    import_limits: ImportLimits | None = None,
    schema_check: SchemaCheck | None = None,
) -> APIRouter:
    """Build the ``/db`` router.

    Args:
        audit_default_limit: rows ``GET /db/audit`` returns when no ``limit`` is given.
        audit_max_limit: the largest ``limit`` accepted.
        auth: dependencies guarding the routes: ``read`` on health, audit, the change stream
            and diagram,
            ``admin`` on export, import, backup and restore.
        max_restore_bytes: the largest backup file ``POST /db/restore`` accepts (413 beyond).
        max_import_bytes: the largest file ``POST /db/import`` accepts (413 beyond).
        import_limits: what one import may expand to and read (rows, lines, zip ratio; see
            :class:`storage.uploads.ImportLimits`).
        schema_check: what ``GET /db/ready`` compares the tables with (default: every model,
            compared at the first probe; ``bootstrap`` passes one computed at startup).

    Raises:
        ValueError: a limit is not positive, or the default limit exceeds the maximum.
    """
    if not 1 <= audit_default_limit <= audit_max_limit:
        raise ValueError("need 1 <= audit_default_limit <= audit_max_limit")
    if max_restore_bytes < 1 or max_import_bytes < 1:
        raise ValueError("upload limits must be positive")
    auth = auth or RouteAuth()
    schema = schema_check or SchemaCheck()
    read, admin = list(auth.read), auth.admin_guards
    router = APIRouter(prefix="/db", tags=["db"], route_class=StorageRoute, lifespan=feed_lifespan)
    add_change_stream(router, "/changes", dependencies=read, name="db_changes")

    @router.get("/health", dependencies=read, operation_id="db_health")
    def health() -> HealthStatus:
        """Run a query on the database; 503 when it cannot be reached."""
        check_reachable()
        return HealthStatus(backend=backend_name())

    async def live() -> Liveness:
        """The process answers (liveness); the database is not asked."""
        return Liveness()

    router.add_api_route(
        "/live",
        live,
        methods=["GET"],
        dependencies=read,
        operation_id="db_live",
        route_class_override=_ProcessRoute,
    )

    @router.get(
        "/ready",
        dependencies=read,
        operation_id="db_ready",
        responses={503: {"description": _NOT_READY}},
    )
    def ready() -> Readiness:
        """The database answers and its tables match the models (readiness); 503 with the
        reason otherwise."""
        check_reachable()
        schema.check()
        return Readiness(backend=backend_name())

    @router.get(
        "/audit",
        dependencies=read,
        operation_id="list_audit_log",
        responses={200: {"headers": {"X-Total-Count": {**TOTAL_COUNT, "required": True}}}},
    )
    def audit(
        response: Response,
        component: str | None = None,
        record_id: str | None = None,
        actor: str | None = None,
        operation: str | None = None,
        since: Annotated[
            datetime | None, Query(description="On or after (ISO 8601; no offset means UTC).")
        ] = None,
        until: Annotated[
            datetime | None, Query(description="Before (ISO 8601; no offset means UTC).")
        ] = None,
        # The bounds are this router's options, so they sit in the default, not the annotation
        # (annotations are strings here, resolved at module level).
        limit: int = Query(audit_default_limit, ge=1, le=audit_max_limit),
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> list[AuditEntry]:
        """Audit rows matching every filter, newest first; ``X-Total-Count`` counts them all."""
        try:
            conditions = audit_filters(
                component=component,
                record_id=record_id,
                actor=actor,
                operation=operation,
                since=since,
                until=until,
            )
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        statement = newest_first(conditions, offset=offset, limit=limit)
        with database.read_session() as session:
            rows = session.scalars(statement).all()
            total = session.scalar(select(func.count()).select_from(AuditLog).where(*conditions))
        response.headers["X-Total-Count"] = str(total or 0)
        return [AuditEntry.model_validate(row) for row in rows]

    @router.get("/audit/verify", dependencies=read)
    def audit_verify() -> ChainReport:
        """Check the audit log's hash chain from its first row to its head, in pages: ``ok``,
        or the first broken row and what is wrong with it; ``head`` is the last row's hash."""
        return verify_chain()

    @router.get(
        "/diagram.svg",
        dependencies=read,
        operation_id="get_schema_diagram",
        response_class=Response,
        responses={200: file_response(_SVG, "The diagram (SVG)", attachment=False)},
    )
    def diagram_svg() -> Response:
        """The schema as an SVG diagram; 503 with an install hint when no dot program is found."""
        return Response(diagram.render_svg(), media_type=_SVG)

    def export_zip() -> StreamingResponse:
        """Every table as ``{table}.csv`` in one zip (the format: docs/database-router.md).

        Sent while it is written, so the first bytes leave at once whatever the size.
        """
        chunks = export.iter_export()
        # The first piece here: an error opening the read (database unreachable) still gets
        # its status code, before the response has begun.
        first = next(chunks, b"")
        headers = {"Content-Disposition": f'attachment; filename="export-{_stamp()}.zip"'}
        return StreamingResponse(itertools.chain([first], chunks), media_type=_ZIP, headers=headers)

    def backup_sqlite() -> StreamingResponse:
        """A consistent snapshot of the database as one SQLite file."""
        snapshot = backup.open_snapshot()
        return _stream(snapshot, _SQLITE, f"backup-{_stamp()}.sqlite")

    async def import_csv(
        request: Request,
        actor: Annotated[str, Depends(actor_dependency(None))],
        table: Annotated[str | None, Query(description="The table of a single CSV file.")] = None,
        mode: Annotated[ImportMode, Query(description="insert, upsert or replace.")] = "insert",
        dry_run: Annotated[bool, Query(description="Check everything, change nothing.")] = False,
    ) -> ImportSummary:
        """Load CSV data back, checked against the models, in one transaction.

        The body (multipart, field ``file``: an export zip, or one CSV file) is read only once
        the route's guards let the request in. A client that goes away stops the import; it is
        rolled back.
        """
        async with uploaded_file(request) as upload, cancelled_on_disconnect(request) as gone:
            return await run_in_threadpool(
                importer.import_upload,
                upload,
                actor=actor,
                table=table,
                mode=mode,
                dry_run=dry_run,
                limits=import_limits,
                cancelled=gone,
            )

    async def restore_sqlite(
        request: Request,
        actor: Annotated[str, Depends(optional_actor)],
        integrity_check: Annotated[
            bool, Query(description="Run PRAGMA integrity_check on the file first.")
        ] = True,
        dry_run: Annotated[bool, Query(description="Check the file only.")] = False,
    ) -> RestoreSummary:
        """Replace the database's data with a backup, atomically, while the app runs.

        The body (multipart, field ``file``: a SQLite backup file) is read only once the
        route's guards let the request in.
        """
        async with uploaded_file(request) as upload:
            return await run_in_threadpool(
                restore.restore_upload,
                upload,
                actor=actor,
                max_bytes=max_restore_bytes,
                integrity_check=integrity_check,
                dry_run=dry_run,
            )

    for path, download, operation, media_type, what in (
        ("/export.zip", export_zip, "download_export", _ZIP, "A zip of CSV files"),
        ("/backup.sqlite", backup_sqlite, "download_backup", _SQLITE, "A SQLite file"),
    ):
        router.add_api_route(
            path,
            download,
            methods=["GET"],
            dependencies=admin,
            operation_id=operation,
            response_class=StreamingResponse,
            responses={200: file_response(media_type, what)},
            route_class_override=AdminRoute,
        )
    replacing = auth.replacing_guards()
    _add_access_probes(router, {"read": read, "write": list(auth.write), "admin": admin,
                                "replace": replacing})  # fmt: skip
    for path, endpoint, operation, limit, what in (
        ("/import", import_csv, "import_data", max_import_bytes, "An export zip, or one CSV file."),
        ("/restore", restore_sqlite, "restore_backup", max_restore_bytes, "A SQLite backup file."),
    ):
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            dependencies=replacing,
            operation_id=operation,
            route_class_override=limit_body(limit + _MULTIPART_SLACK, AdminRoute.kind),
            openapi_extra=file_upload_body(what),
        )
    return router


def _add_access_probes(router: APIRouter, guards: dict[str, list[Any]]) -> None:
    """``GET /db/access/{level}``: 204 when the request's credentials pass the guards of that
    level of route (``read``, ``write``, ``admin``, ``replace``: restore and import), else the
    guards' own 401 or 403. Nothing is read or written; clients such as the operator console
    ask before they offer an action."""
    for level, dependencies in guards.items():

        async def allowed() -> Response:
            return Response(status_code=204)

        router.add_api_route(
            f"/access/{level}",
            allowed,
            methods=["GET"],
            dependencies=dependencies,
            operation_id=f"may_{level}",
            summary=f"Whether these credentials may use the {level} routes",
            description=_add_access_probes.__doc__,
            status_code=204,
            responses={204: {"description": "Allowed."}},
            route_class_override=_ProcessRoute,
        )


class _ProcessRoute(StorageRoute):
    """A route that answers without the database (no 503 to document)."""

    uses_database = False


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _stream(file: IO[bytes], media_type: str, filename: str) -> StreamingResponse:
    size = file.seek(0, os.SEEK_END)
    file.seek(0)

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := file.read(_CHUNK):
                yield chunk
        finally:
            file.close()

    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Content-Length": str(size),
    }
    return StreamingResponse(chunks(), media_type=media_type, headers=headers)
