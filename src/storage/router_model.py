"""``build_crud_router``: the generated REST API of one model, compatible with vention-storage.

Routes, under ``/{component}``::

    GET    /               list: a JSON array; filters, sort, limit/offset or cursor
    GET    /{id}           one record (404 when missing)
    POST   /               create (201)
    PUT    /{id}           upsert: partial update (200), or create with every required field (201)
    PATCH  /{id}           partial update (200)
    DELETE /{id}           soft delete when the model has ``deleted_at``, else delete (204)
    POST   /{id}/restore   undo a soft delete (200; 409 for models without ``deleted_at``)

Mutations need the ``X-User`` header (the audit actor). Records come with an ``ETag``, and
writes honour ``If-Match`` in the transaction that writes. See ``docs/crud-router.md``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from storage._crud_docs import ERRORS, GET_PARAMETERS, HEADERS, ROUTES
from storage._crud_routes import CrudRoutes
from storage._endpoints import typed_endpoint
from storage._limits import RecordCap
from storage._openapi import resource_names
from storage._schemas import crud_schemas
from storage._streams import add_change_stream, feed_lifespan_of
from storage.accessor import ModelAccessor
from storage.http import RouteAuth, StorageRoute, get_actor

__all__ = ["DEFAULT_MAX_RECORDS_PER_MODEL", "build_crud_router", "get_actor"]

DEFAULT_MAX_RECORDS_PER_MODEL = 100
"""The row cap of :func:`build_crud_router` when none is given (as in vention-storage)."""


def build_crud_router(
    accessor: ModelAccessor[Any],
    *,
    max_records: int | None = DEFAULT_MAX_RECORDS_PER_MODEL,
    default_limit: int = 100,
    max_limit: int = 1000,
    auth: RouteAuth | None = None,
    read_only_fields: Collection[str] = (),
    tags: Sequence[str] | None = None,
    operation_names: tuple[str, str] | None = None,
) -> APIRouter:
    """The CRUD routes of one model, under ``/{accessor.component}``.

    Args:
        accessor: the model's accessor; its component name is the URL prefix.
        max_records: at most this many live rows (409 beyond it); ``None``: no cap.
        default_limit: rows per list page when the client gives no ``limit``.
        max_limit: the largest ``limit`` a client may ask for.
        auth: dependencies guarding the routes: ``auth.read`` on GET, ``auth.write`` on the rest.
        read_only_fields: more server-managed columns (besides ``deleted_at``) that request
            bodies may not set, such as ``created_at``.
        tags: OpenAPI tags; default ``[component]``.
        operation_names: the ``(singular, plural)`` nouns of the operation ids
            (``get_{singular}``, ``list_{plural}``); default from the model's name and the
            component (see :func:`storage._openapi.resource_names`).

    Raises:
        ValueError: a limit is out of range, a read-only field is not a column, or the
            operation names are not two different identifiers.
    """
    if not 1 <= default_limit <= max_limit:
        raise ValueError("default_limit must be between 1 and max_limit")
    model_name = accessor.model.__name__
    one_name, many_name = resource_names(model_name, accessor.component, operation_names)
    schemas = crud_schemas(accessor.model, accessor.primary_key, read_only=read_only_fields)
    routes = CrudRoutes(accessor, schemas, RecordCap(accessor, max_records))
    guard = auth or RouteAuth()
    component = accessor.component
    router = APIRouter(
        prefix=f"/{component}",
        tags=list(tags or [component]),
        route_class=StorageRoute,
        lifespan=feed_lifespan_of(accessor.bound_database),
    )
    if accessor.enable_auditing:  # the stream is the audit log: none without it
        # Before "/{id}", which would take "changes" for an id.
        add_change_stream(
            router,
            "/changes",
            component=component,
            dependencies=list(guard.read),
            name=f"{component}_changes",
            operation_id=f"{one_name}_changes",
            database=accessor.bound_database,
        )
    key, one = routes.key_annotation, schemas.read
    types, options = _signatures(routes, default_limit, max_limit), _route_options(routes)
    for name, (method, path, operation, summary, errors) in ROUTES.items():
        responses: dict[int | str, Any] = {code: {"description": ERRORS[code]} for code in errors}
        extra = {"response_model": one, **options.get(name, {})}
        responses.update(extra.pop("responses", {}))
        for code, sent in HEADERS.get(name, {}).items():
            responses[code] = {**responses.get(code, {}), **sent}
        router.add_api_route(
            path,
            typed_endpoint(getattr(routes, name), **types.get(name, {"id": key})),
            methods=[method],
            name=f"{component}_{name.split('_')[0]}",
            operation_id=operation.format(one=one_name, many=many_name),
            summary=summary.format(component),
            responses=responses,
            dependencies=_guards(guard, name, method),
            **extra,
        )
    return router


def _signatures(
    routes: CrudRoutes, default_limit: int, max_limit: int
) -> dict[str, dict[str, Any]]:
    """The typed parameters of the endpoints that take more than the record's key."""
    key, schemas = routes.key_annotation, routes.schemas
    limit = Annotated[int, Query(ge=1, le=max_limit, description="Rows per page.")]
    return {
        "list_records": {"limit": (limit, default_limit)},
        "create_record": {"body": schemas.create},
        "put_record": {"id": key, "body": schemas.replace},
        "patch_record": {"id": key, "body": schemas.update},
    }


def _route_options(routes: CrudRoutes) -> dict[str, dict[str, Any]]:
    """What ``add_api_route`` takes besides the defaults, per endpoint."""
    one = routes.schemas.read
    nothing = {"status_code": 204, "response_class": Response, "response_model": None}
    return {
        "list_records": {
            "response_model": list[one],  # type: ignore[valid-type]
            "openapi_extra": {"parameters": routes.query.openapi_parameters()},
        },
        "get_record": {"openapi_extra": {"parameters": GET_PARAMETERS}},
        "create_record": {"status_code": 201},
        "put_record": {"responses": {201: {"description": "Created", "model": one}}},
        "delete_record": nothing,
        "purge_record": nothing,
    }


def _guards(auth: RouteAuth, name: str, method: str) -> list[Any]:
    if name == "purge_record":  # destroys data: as restore and import, local only when open
        return auth.replacing_guards()
    return list(auth.read if method == "GET" else auth.write)
