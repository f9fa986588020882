"""What the OpenAPI document says of each route of :func:`storage.router_model.build_crud_router`:
its operation id, summary, error statuses, and the headers it reads by hand or sends."""

from __future__ import annotations

from typing import Any

from storage._openapi import ETAG, LINK, LOCATION, NEXT_CURSOR, TOTAL_COUNT

__all__ = ["ERRORS", "GET_PARAMETERS", "HEADERS", "ROUTES"]

# Endpoint (a method of _crud_routes.CrudRoutes): HTTP method, path, operation id (of the
# model's singular and plural nouns), summary, documented error statuses.
ROUTES: dict[str, tuple[str, str, str, str, tuple[int, ...]]] = {
    "list_records": ("GET", "/", "list_{many}", "List {}", ()),
    "get_record": ("GET", "/{id}", "get_{one}", "Get one of {}", (304, 404)),
    "create_record": ("POST", "/", "create_{one}", "Create one of {}", (400, 409)),
    "put_record": (
        "PUT",
        "/{id}",
        "replace_{one}",
        "Update (or create) one of {}",
        (400, 409, 412),
    ),
    "patch_record": (
        "PATCH",
        "/{id}",
        "update_{one}",
        "Change fields of one of {}",
        (400, 404, 409, 412),
    ),
    "delete_record": (
        "DELETE",
        "/{id}",
        "delete_{one}",
        "Delete one of {}",
        (400, 404, 409, 412),
    ),
    "restore_record": (
        "POST",
        "/{id}/restore",
        "restore_{one}",
        "Restore a deleted one of {}",
        (400, 404, 409, 412),
    ),
    "purge_record": (
        "DELETE",
        "/{id}/purge",
        "purge_{one}",
        "Delete a deleted one of {} for good",
        (400, 404, 409),
    ),
}

# The headers each route sends, by status.
_VERSIONED = {"headers": {"ETag": ETAG}}
_CREATED = {"headers": {"ETag": ETAG, "Location": LOCATION}}
HEADERS: dict[str, dict[int, dict[str, Any]]] = {
    "list_records": {
        200: {"headers": {"X-Total-Count": TOTAL_COUNT, "Link": LINK, "X-Next-Cursor": NEXT_CURSOR}}
    },
    "get_record": {200: _VERSIONED, 304: _VERSIONED},
    "create_record": {201: _CREATED},
    "put_record": {200: _VERSIONED, 201: _CREATED},
    "patch_record": {200: _VERSIONED},
    "restore_record": {200: _VERSIONED},
}

# GET one reads these by hand (it is the hot path), so FastAPI cannot document them.
GET_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "include_deleted",
        "in": "query",
        "required": False,
        "schema": {"type": "boolean", "default": False, "title": "Include Deleted"},
        "description": "Include soft-deleted records.",
    },
    {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "title": "If-None-Match"},
        "description": "ETags the client has: 304 when the record still has one of them.",
    },
]
ERRORS: dict[int, str] = {
    304: "Not modified: the record still has an ETag named in If-None-Match",
    400: "The X-User header is missing",
    404: "No such record (or it is soft-deleted)",
    409: "Conflict: the record limit, a unique or foreign key, a soft-deleted record or parent, "
    "or live children",
    412: "Precondition failed: the record changed since the ETag in If-Match",
}
