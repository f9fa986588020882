"""``build_programs_router``: the program store's HTTP API, the routes of the NOVA seed app.

Routes, under ``/api/v2`` by default::

    GET    /program-templates                 every stored template (with its JSON schema)
    GET    /program-templates/{template_name} one template (ETag; 304 on If-None-Match)
    GET    /programs                          every program instance
    GET    /programs/template/{template_name} the instances of one template (404: no template)
    GET    /programs/{program_name}           one instance (ETag; 304 on If-None-Match)
    POST   /programs/{program_name}           create (201; 409 name taken; 422 bad data)
    PUT    /programs/{program_name}           replace the data (200; 412 on a stale If-Match)
    DELETE /programs/{program_name}           delete (204; 412 on a stale If-Match)
    GET    /database/stats                    rows per table, size, invalid programs
    POST   /database/backup                   a consistent SQLite snapshot on the server (201)

The ``X-User`` header names the audit actor of a change; clients that send none (as the NOVA
program-store clients do) are recorded as ``default_actor``, ``"anonymous"`` unless the app
requires the header. Errors map to
status codes in :class:`storage.http.StorageRoute`, as in every other router.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import fastapi
from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from sqlmodel import SQLModel

from programs._maintenance import database_stats, write_backup
from programs._registry import ProgramRegistry
from programs._schemas import (
    BackupInfo,
    DatabaseStats,
    ProgramCreate,
    ProgramRead,
    ProgramUpdate,
    TemplateRead,
)
from programs._tables import NAME_LENGTH
from programs.errors import ProgramDataError, ProgramNotFound
from programs.store import ProgramStore
from storage._auth import actor_dependency
from storage._endpoints import typed_endpoint
from storage._etags import etag_of, if_match, if_none_match
from storage._openapi import ETAG, LOCATION
from storage.accessor import ModelAccessor
from storage.errors import PreconditionFailedError, require_found
from storage.http import ANONYMOUS_ACTOR, IfMatch, RouteAuth, StorageRoute

__all__ = ["build_programs_router"]

ProgramName = Annotated[
    str, Path(min_length=1, max_length=NAME_LENGTH, description="The program's name.")
]
TemplateName = Annotated[
    str, Path(min_length=1, max_length=NAME_LENGTH, description="The template's name.")
]
IfNoneMatch = Annotated[
    # Not storage.http's: on these GETs it means 304, where the CRUD router's PUT takes it as
    # a create-only precondition (412).
    str | None,
    Header(alias="If-None-Match", description="ETags the client has (304 when current)."),
]

# The headers the routes send: a program's or template's version, and where a new one is.
_VERSIONED: dict[int | str, Any] = {code: {"headers": {"ETag": ETAG}} for code in (200, 304)}
_CREATED = {"ETag": ETAG, "Location": LOCATION}

_ERRORS: dict[int, str] = {
    304: "Not modified: the ETag in If-None-Match is current",
    400: "The X-User header is missing",
    404: "No such program or template",
    409: "The name is taken, or the template is no longer in the code",
    412: "The program changed since the ETag in If-Match",
    422: "The data does not match the template's parameter model",
}


def _responses(*codes: int) -> dict[int | str, Any]:
    return {code: {"description": _ERRORS[code]} for code in codes}


# Endpoint (a method of _ProgramRoutes): HTTP method, path, operation id, the guards it takes
# (RouteAuth's read, write or admin), and its options; in the order they are matched.
_ROUTES: dict[str, tuple[str, str, str, str, dict[str, Any]]] = {
    "list_program_templates": ("GET", "/program-templates", "list_program_templates", "read", {}),
    "get_program_template": (
        "GET",
        "/program-templates/{template_name}",
        "get_program_template",
        "read",
        {"response_model": TemplateRead, "responses": {**_responses(304, 404), **_VERSIONED}},
    ),
    "list_programs": ("GET", "/programs", "list_programs", "read", {}),
    "list_programs_of_template": (
        "GET",
        "/programs/template/{template_name}",
        "list_programs_of_template",
        "read",
        {"responses": _responses(404)},
    ),
    "get_program": (
        "GET",
        "/programs/{program_name}",
        "get_program",
        "read",
        {"response_model": ProgramRead, "responses": {**_responses(304, 404), **_VERSIONED}},
    ),
    "create_program": (
        "POST",
        "/programs/{program_name}",
        "create_program",
        "write",
        {
            "status_code": 201,
            "response_model": ProgramRead,
            "responses": {**_responses(400, 404, 409, 422), 201: {"headers": _CREATED}},
        },
    ),
    "update_program": (
        "PUT",
        "/programs/{program_name}",
        "update_program",
        "write",
        {
            "response_model": ProgramRead,
            "responses": {**_responses(400, 404, 409, 412, 422), 200: {"headers": {"ETag": ETAG}}},
        },
    ),
    "delete_program": (
        "DELETE",
        "/programs/{program_name}",
        "delete_program",
        "write",
        {"status_code": 204, "response_class": Response, "responses": _responses(400, 404, 412)},
    ),
    "database_stats": ("GET", "/database/stats", "get_database_stats", "read", {}),
    "backup_database": (
        "POST",
        "/database/backup",
        "backup_database",
        "admin",
        {"status_code": 201, "responses": _responses(400)},
    ),
}


def build_programs_router(
    source: ProgramStore | ProgramRegistry,
    *,
    prefix: str = "/api/v2",
    auth: RouteAuth | None = None,
    backup_dir: str | os.PathLike[str] | None = None,
    tags: list[str] | None = None,
    default_actor: str | None = ANONYMOUS_ACTOR,
) -> APIRouter:
    """The program store's routes (see the module docstring).

    Args:
        source: the store, or a registry to build a :class:`ProgramStore` on.
        prefix: where the routes live.
        auth: dependencies guarding the routes: ``read`` on GET, ``write`` on program
            changes, ``admin`` on the backup.
        backup_dir: where ``POST /database/backup`` writes; default ``backups/`` next to a
            SQLite file, else in the working directory.
        tags: OpenAPI tags; default ``["programs"]``.
        default_actor: the audit actor of a change whose client sends no ``X-User`` (the NOVA
            program-store clients send none); ``None`` requires the header (400 without).
    """
    store = source if isinstance(source, ProgramStore) else ProgramStore(source)
    routes = _ProgramRoutes(store, backup_dir)
    guard = auth or RouteAuth()
    router = APIRouter(prefix=prefix, tags=list(tags or ["programs"]), route_class=StorageRoute)
    who = actor_dependency(default_actor)
    # The backup takes the actor dependency too: a 400 without X-User when the app requires it.
    guards = {
        "read": list(guard.read),
        "write": list(guard.write),
        "admin": [*guard.admin_guards, Depends(who)],
    }
    actor = (str, fastapi.Depends(who))
    for name, (method, path, operation_id, kind, options) in _ROUTES.items():
        router.add_api_route(
            path,
            typed_endpoint(getattr(routes, name), actor=actor),
            methods=[method],
            dependencies=guards[kind],
            operation_id=operation_id,
            **options,
        )
    return router


class _ProgramRoutes:
    """The endpoint bodies; ``build_programs_router`` registers them, with the actor
    dependency of its ``default_actor``."""

    def __init__(self, store: ProgramStore, backup_dir: str | os.PathLike[str] | None) -> None:
        self.store = store
        self.backup_dir = backup_dir

    # -- reads -----------------------------------------------------------------------------

    def list_program_templates(self) -> list[TemplateRead]:
        """Every stored template, also those no longer in the code (``available: false``)."""
        return [TemplateRead.model_validate(row) for row in self.store.list_templates()]

    def get_program_template(
        self, template_name: TemplateName, if_none_match_header: IfNoneMatch = None
    ) -> Response:
        """One template with the JSON schema of its parameters, and its ``ETag``."""
        row = self.store.get_template(template_name)
        return _respond(row, TemplateRead, self.store.templates, if_none_match_header)

    def list_programs(self) -> list[ProgramRead]:
        """Every program instance, ordered by name."""
        return [ProgramRead.model_validate(row) for row in self.store.list_programs()]

    def list_programs_of_template(self, template_name: TemplateName) -> list[ProgramRead]:
        """The program instances of one template (404 when the template does not exist)."""
        self.store.get_template(template_name)
        rows = self.store.list_programs(template_name=template_name)
        return [ProgramRead.model_validate(row) for row in rows]

    def get_program(
        self, program_name: ProgramName, if_none_match_header: IfNoneMatch = None
    ) -> Response:
        """One program instance, with its ``ETag``."""
        row = self.store.get_program(program_name)
        return _respond(row, ProgramRead, self.store.instances, if_none_match_header)

    def database_stats(self) -> DatabaseStats:
        """Rows per table, the database's size and backend, and the program store's health
        (invalid programs, unavailable templates, modules that failed to load)."""
        return database_stats(self.store.database, self.store.registry.problems)

    # -- writes ----------------------------------------------------------------------------

    def create_program(
        self, request: Request, program_name: ProgramName, body: ProgramCreate, actor: str
    ) -> Response:
        """Create a program from a template; ``data`` is validated against its model."""
        store = self.store
        with _field_errors():
            row = store.create_program(program_name, body.template_name, body.data, actor=actor)
        response = _respond(row, ProgramRead, store.instances, None, 201)
        response.headers["Location"] = str(request.url_for("get_program", program_name=row.name))
        return response

    def update_program(
        self,
        program_name: ProgramName,
        body: ProgramUpdate,
        actor: str,
        if_match_header: IfMatch = None,
    ) -> Response:
        """Replace a program's data (and optionally its template); validated like create."""
        with _field_errors(), self.store.database.transaction():
            _check_if_match(self.store, program_name, if_match_header)
            row = self.store.update_program(
                program_name, body.data, template_name=body.template_name, actor=actor
            )
        return _respond(row, ProgramRead, self.store.instances, None)

    def delete_program(
        self, program_name: ProgramName, actor: str, if_match_header: IfMatch = None
    ) -> Response:
        """Delete a program instance."""
        with self.store.database.transaction():
            _check_if_match(self.store, program_name, if_match_header)
            self.store.delete_program(program_name, actor=actor)
        return Response(status_code=204)

    def backup_database(self) -> BackupInfo:
        """Write a consistent snapshot of the database (a SQLite file) on the server."""
        return write_backup(self.store.database, self.backup_dir)


@contextmanager
def _field_errors() -> Iterator[None]:
    # The field errors as FastAPI's own 422 body, located in the request: body.data.<field>.
    try:
        yield
    except ProgramDataError as exc:
        errors = [{**error, "loc": ("body", "data", *error["loc"])} for error in exc.errors]
        raise RequestValidationError(errors) from None


def _etag(row: SQLModel, accessor: ModelAccessor[Any]) -> str:
    return etag_of(accessor.snapshot(row))


def _check_if_match(store: ProgramStore, name: str, header: str | None) -> None:
    # Inside the write's transaction, on the locked row: the check still holds at the write.
    current = require_found(
        store.instances.get_for_update(name), ProgramNotFound(f"program {name!r} not found")
    )
    if header is not None and not if_match(header, _etag(current, store.instances)):
        raise PreconditionFailedError(f"program {name!r} has changed since that version")


def _respond(
    row: SQLModel,
    schema: type[TemplateRead] | type[ProgramRead],
    accessor: ModelAccessor[Any],
    if_none_match_header: str | None,
    status_code: int = 200,
) -> Response:
    etag = _etag(row, accessor)
    if if_none_match_header is not None and if_none_match(if_none_match_header, etag):
        return Response(status_code=304, headers={"ETag": etag})
    body = schema.model_validate(row).model_dump(mode="json")
    return JSONResponse(body, status_code=status_code, headers={"ETag": etag})
