"""``build_db_router()``: database-wide routes under ``/db``.

Health, liveness and readiness, the audit log and its hash chain, the schema diagram, CSV
export and import, and SQLite backup and restore. The work is done in :mod:`storage.backup`,
:mod:`storage.restore`, :mod:`storage.export`, :mod:`storage.importer`, :mod:`storage.diagram`
and :mod:`storage._verification`; this module only maps it to HTTP. Storage errors become their
status codes through :class:`storage.http.StorageRoute`.

As in :mod:`storage.router_model` (its class is in :mod:`storage._crud_routes`), the endpoints
are the methods of one small class, and :func:`build_db_router` registers them from a table of
routes.
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

from storage import backup, diagram, export, importer, restore
from storage import database as storage_database
from storage._auth import actor_dependency, optional_actor
from storage._endpoints import typed_endpoint
from storage._openapi import TOTAL_COUNT, file_response
from storage._streams import add_change_stream, feed_lifespan_of
from storage._verification import ChainReport, verify_chain
from storage.auditor import AuditLog, audit_filters, newest_first
from storage.database import Database
from storage.errors import ValidationError
from storage.http import (
    MAX_OFFSET,
    AdminRoute,
    RouteAuth,
    StorageRoute,
    cancelled_on_disconnect,
    file_upload_body,
    limit_body,
    uploaded_file,
)
from storage.importer import ImportMode, ImportSummary
from storage.readiness import Liveness, Readiness, SchemaCheck, backend_name, check_reachable
from storage.restore import RestoreSummary
from storage.uploads import ImportLimits

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


class _ProcessRoute(StorageRoute):
    """A route that answers without the database (no 503 to document)."""

    uses_database = False


_PROCESS = {"route_class_override": _ProcessRoute}
_ACCESS_LEVELS = ("read", "write", "admin", "replace")
# The probes' description, as the OpenAPI document has always given it (indents included).
_ACCESS_PROBE = (
    "``GET /db/access/{level}``: 204 when the request's credentials pass the guards of that\n"
    "    level of route (``read``, ``write``, ``admin``, ``replace``: restore and import), else"
    " the\n    guards' own 401 or 403. Nothing is read or written; clients such as the operator"
    " console\n    ask before they offer an action."
)

_Actor = Annotated[str, Depends(actor_dependency(None))]
_OptionalActor = Annotated[str, Depends(optional_actor)]


def build_db_router(
    *,
    audit_default_limit: int = 100,
    audit_max_limit: int = 1000,
    auth: RouteAuth | None = None,
    max_restore_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_import_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    import_limits: ImportLimits | None = None,
    schema_check: SchemaCheck | None = None,
    database: Database | None = None,
) -> APIRouter:
    """Build the ``/db`` router of ``database``.

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
        database: the database the routes serve; default
            :func:`storage.database.get_database`, at each request.

    Raises:
        ValueError: a limit is not positive, or the default limit exceeds the maximum.
    """
    if not 1 <= audit_default_limit <= audit_max_limit:
        raise ValueError("need 1 <= audit_default_limit <= audit_max_limit")
    if max_restore_bytes < 1 or max_import_bytes < 1:
        raise ValueError("upload limits must be positive")
    auth = auth or RouteAuth()
    schema = schema_check or SchemaCheck(database=database)
    routes = _DatabaseRoutes(database, schema, import_limits, max_restore_bytes)
    guards = {
        "read": list(auth.read),
        "write": list(auth.write),
        "admin": auth.admin_guards,
        "replace": auth.replacing_guards(),
    }
    lifespan = feed_lifespan_of(database)
    router = APIRouter(prefix="/db", tags=["db"], route_class=StorageRoute, lifespan=lifespan)
    add_change_stream(
        router, "/changes", dependencies=guards["read"], name="db_changes", database=database
    )
    limit = Query(audit_default_limit, ge=1, le=audit_max_limit)
    endpoints = {"audit": typed_endpoint(routes.audit, limit=(int, limit))}
    uploads = {"import_csv": max_import_bytes, "restore_sqlite": max_restore_bytes}
    for name, method, path, level, options in _route_table():
        if name in uploads:
            kind = limit_body(uploads[name] + _MULTIPART_SLACK, AdminRoute.kind)
            options = {**options, "route_class_override": kind}
        router.add_api_route(
            path,
            endpoints.get(name) or getattr(routes, name),
            methods=[method],
            dependencies=guards[level],
            **options,
        )
    return router


def _route_table() -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """The routes in the order they are registered: endpoint (a method of ``_DatabaseRoutes``),
    HTTP method, path, the level of the guards, and the other options of ``add_api_route``.
    Built per router: FastAPI keeps the dicts it is given, so routers must not share them."""
    total = {200: {"headers": {"X-Total-Count": {**TOTAL_COUNT, "required": True}}}}
    not_ready = {503: {"description": _NOT_READY}}
    svg = {200: file_response(_SVG, "The diagram (SVG)", attachment=False)}
    return [
        ("health", "GET", "/health", "read", {"operation_id": "db_health"}),
        ("live", "GET", "/live", "read", {"operation_id": "db_live", **_PROCESS}),
        ("ready", "GET", "/ready", "read", {"operation_id": "db_ready", "responses": not_ready}),
        ("audit", "GET", "/audit", "read", {"operation_id": "list_audit_log", "responses": total}),
        ("audit_verify", "GET", "/audit/verify", "read", {}),
        ("diagram_svg", "GET", "/diagram.svg", "read",
         {"operation_id": "get_schema_diagram", "response_class": Response, "responses": svg}),
        ("export_zip", "GET", "/export.zip", "admin",
         _download("download_export", _ZIP, "A zip of CSV files")),
        ("backup_sqlite", "GET", "/backup.sqlite", "admin",
         _download("download_backup", _SQLITE, "A SQLite file")),
        *[("allowed", "GET", f"/access/{level}", level, _probe(level)) for level in _ACCESS_LEVELS],
        ("import_csv", "POST", "/import", "replace",
         _upload("import_data", "An export zip, or one CSV file.")),
        ("restore_sqlite", "POST", "/restore", "replace",
         _upload("restore_backup", "A SQLite backup file.")),
    ]  # fmt: skip


def _download(operation: str, media_type: str, what: str) -> dict[str, Any]:
    return {
        "operation_id": operation,
        "response_class": StreamingResponse,
        "responses": {200: file_response(media_type, what)},
        "route_class_override": AdminRoute,
    }


def _probe(level: str) -> dict[str, Any]:
    return {
        "operation_id": f"may_{level}",
        "summary": f"Whether these credentials may use the {level} routes",
        "description": _ACCESS_PROBE,
        "status_code": 204,
        "responses": {204: {"description": "Allowed."}},
        **_PROCESS,
    }


def _upload(operation: str, what: str) -> dict[str, Any]:
    # build_db_router adds the route class, which holds the router's upload limit.
    return {"operation_id": operation, "openapi_extra": file_upload_body(what)}


class _DatabaseRoutes:
    """The endpoint bodies of ``build_db_router``, with the options they need."""

    def __init__(
        self,
        database: Database | None,
        schema: SchemaCheck,
        import_limits: ImportLimits | None,
        max_restore_bytes: int,
    ) -> None:
        self._database = database
        self.schema = schema
        self.import_limits = import_limits
        self.max_restore_bytes = max_restore_bytes

    @property
    def db(self) -> Database:
        """The database given to the router, else the default one at the time of the call."""
        return self._database or storage_database.get_database()

    # -- probes ----------------------------------------------------------------------------

    def health(self) -> HealthStatus:
        """Run a query on the database; 503 when it cannot be reached."""
        check_reachable(self.db)
        return HealthStatus(backend=backend_name(self.db))

    async def live(self) -> Liveness:
        """The process answers (liveness); the database is not asked."""
        return Liveness()

    def ready(self) -> Readiness:
        """The database answers and its tables match the models (readiness); 503 with the
        reason otherwise."""
        check_reachable(self.db)
        self.schema.check()
        return Readiness(backend=backend_name(self.db))

    async def allowed(self) -> Response:
        return Response(status_code=204)

    # -- audit log and diagram -------------------------------------------------------------

    def audit(
        self,
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
        limit: Any = None,  # its bounds are the router's options: build_db_router sets them
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
        with self.db.read_session() as session:
            rows = session.scalars(statement).all()
            total = session.scalar(select(func.count()).select_from(AuditLog).where(*conditions))
        response.headers["X-Total-Count"] = str(total or 0)
        return [AuditEntry.model_validate(row) for row in rows]

    def audit_verify(self) -> ChainReport:
        """Check the audit log's hash chain from its first row to its head, in pages: ``ok``,
        or the first broken row and what is wrong with it; ``head`` is the last row's hash."""
        return verify_chain(database=self.db)

    def diagram_svg(self) -> Response:
        """The schema as an SVG diagram; 503 with an install hint when no dot program is found."""
        return Response(diagram.render_svg(database=self.db), media_type=_SVG)

    # -- downloads -------------------------------------------------------------------------

    def export_zip(self) -> StreamingResponse:
        """Every table as ``{table}.csv`` in one zip (the format: docs/database-router.md).

        Sent while it is written, so the first bytes leave at once whatever the size.
        """
        chunks = export.iter_export(database=self.db)
        # The first piece here: an error opening the read (database unreachable) still gets
        # its status code, before the response has begun.
        first = next(chunks, b"")
        headers = {"Content-Disposition": f'attachment; filename="export-{_stamp()}.zip"'}
        return StreamingResponse(itertools.chain([first], chunks), media_type=_ZIP, headers=headers)

    def backup_sqlite(self) -> StreamingResponse:
        """A consistent snapshot of the database as one SQLite file."""
        snapshot = backup.open_snapshot(database=self.db)
        return _stream(snapshot, _SQLITE, f"backup-{_stamp()}.sqlite")

    # -- uploads ---------------------------------------------------------------------------

    async def import_csv(
        self,
        request: Request,
        actor: _Actor,
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
                limits=self.import_limits,
                cancelled=gone,
                database=self.db,
            )

    async def restore_sqlite(
        self,
        request: Request,
        actor: _OptionalActor,
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
                max_bytes=self.max_restore_bytes,
                integrity_check=integrity_check,
                dry_run=dry_run,
                database=self.db,
            )


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
