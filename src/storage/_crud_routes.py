"""The endpoint bodies of :func:`storage.router_model.build_crud_router`: one method per route
of a model's CRUD API, and the request and response helpers they share (JSON rendering, ETag
preconditions, the 422 of input validated by hand, hook refusals as 422)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from urllib.parse import quote

import pydantic_core
from fastapi import Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlmodel import Session

from storage._auth import actor_dependency
from storage._etags import etag_of_bytes, if_match, if_none_match
from storage._limits import RecordCap
from storage._query import ModelQuery
from storage._rows import SOFT_DELETE_COLUMN
from storage._schemas import CrudSchemas
from storage.accessor import ModelAccessor
from storage.errors import (
    ConflictError,
    IntegrityConflictError,
    NotFoundError,
    PreconditionFailedError,
    RecordDeletedError,
    SoftDeleteNotSupported,
    ValidationError,
    require_found,
)
from storage.http import MAX_OFFSET, IfMatch
from storage.uniqueness import unique_sets

__all__ = ["LIST_PARAMETERS", "CrudRoutes"]

LIST_PARAMETERS = ("limit", "offset", "cursor", "sort", "include_deleted", "count")
"""The query parameters of the list route that are not filters."""

Actor = Annotated[str, Depends(actor_dependency(None))]
IfNoneMatch = Annotated[
    str | None,
    Header(alias="If-None-Match", description="ETags the client has; '*' on PUT: create only."),
]
IncludeDeleted = Annotated[bool, Query(description="Include soft-deleted records.")]

_JSON = "application/json"
_FLAG = TypeAdapter(bool)


class CrudRoutes:
    """The endpoint bodies; ``build_crud_router`` gives them their typed signatures."""

    def __init__(self, accessor: ModelAccessor[Any], schemas: CrudSchemas, cap: RecordCap) -> None:
        self.accessor = accessor
        self.schemas = schemas
        self.cap = cap
        self.query = ModelQuery(accessor.model, accessor.primary_key, reserved=LIST_PARAMETERS)
        kind = self.query.fields[accessor.primary_key].kind
        path = Path(description=f"The {accessor.primary_key} of the record.")
        self.key_annotation: Any = Annotated[(kind if kind in (int, uuid.UUID) else str, path)]

    # -- reads -----------------------------------------------------------------------------

    def list_records(
        self,
        request: Request,
        limit: Any,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip.")] = 0,
        cursor: Annotated[str | None, Query(description="Resume after this page.")] = None,
        sort: Annotated[str | None, Query(description="Sort keys: a,-b.")] = None,
        include_deleted: IncludeDeleted = False,
        count: Annotated[bool, Query(description="Send X-Total-Count.")] = False,
    ) -> Response:
        """Records as a JSON array, filtered (``field__op=value``), sorted and paged."""
        dialect = self._dialect()
        conditions = self.query.filters(request.query_params.multi_items(), dialect=dialect)
        keys = self.query.sort(sort)
        page = list(conditions)
        if cursor is not None:
            if offset:
                raise ValidationError("use either offset or cursor, not both")
            values = self.query.decode_cursor(keys, cursor, dialect=dialect)
            page.append(self.query.after(keys, values, dialect=dialect))
        rows = self.accessor.find_ordered(
            *page,
            order=self.query.order_by(keys, dialect=dialect),
            include_deleted=include_deleted,
            limit=limit + 1,
            offset=offset,
        )
        headers = {}
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = self.query.encode_cursor(keys, rows[-1])
            url = request.url.remove_query_params("offset").include_query_params(cursor=next_cursor)
            headers = {"Link": f'<{url}>; rel="next"', "X-Next-Cursor": next_cursor}
        if count:
            total = self.accessor.count(*conditions, include_deleted=include_deleted)
            headers["X-Total-Count"] = str(total)
        content = _to_json([self._body(row) for row in rows])
        return Response(content, headers=headers, media_type=_JSON)

    async def get_record(self, request: Request, id: Any) -> Response:
        """One record, with its ``ETag``; 304 when ``If-None-Match`` names that ETag."""
        # The hottest route, so it is lean: async, because on SQLite the read by key costs
        # less than the hop to a worker thread; its two optional parameters read here (and
        # documented in crud_docs.GET_PARAMETERS), because FastAPI's validation of them cost
        # about 6% of /ping's rate in a trial (docs/performance.md).
        include_deleted = _query_flag(request, "include_deleted")
        found = await self.accessor.get_async(self._key(id), include_deleted=include_deleted)
        content = self._render(self._require(found, id))
        etag = etag_of_bytes(content)
        tags = request.headers.get("if-none-match")
        if tags is not None and if_none_match(tags, etag):
            return Response(status_code=304, headers={"ETag": etag})
        return Response(content, headers={"ETag": etag}, media_type=_JSON)

    # -- writes ----------------------------------------------------------------------------

    def create_record(self, request: Request, body: Any, actor: Actor) -> Response:
        """Create a record (201). 409 when the model already holds ``max_records`` records."""
        obj = self.accessor.model(**body.model_dump(exclude_unset=True))
        try:
            with _hook_errors(), self.cap.transaction(savepoints=False) as session:
                self._insert(session, obj, actor)
        except IntegrityConflictError as exc:
            held = self._held_by_deleted(obj)
            if held is None:
                raise
            raise held from exc
        return self._respond(obj, 201, self._location(request, obj, at_collection=True))

    def put_record(
        self,
        request: Request,
        id: Any,
        body: Any,
        actor: Actor,
        if_match_header: IfMatch = None,
        if_none_match_header: IfNoneMatch = None,
    ) -> Response:
        """Update the fields sent (200), or create the record when it does not exist (201;
        every required field is needed then). Server-managed fields in the body are ignored."""
        key = self._key(id)
        fields = self._body_fields(body, key)
        with _hook_errors(), self.cap.transaction(savepoints=False) as session:
            # A plain read first: locking a key that does not exist takes a gap lock on MySQL,
            # and two such creates deadlock.
            existing = self.accessor.get(key, include_deleted=True)
            if existing is not None:
                existing = self.accessor.get_for_update(key, include_deleted=True)
            if existing is None:
                if if_match_header is not None:
                    raise PreconditionFailedError(f"{self.accessor.component} {id} does not exist")
                obj = self._insert(session, self._new_record(key, fields), actor)
                return self._respond(obj, 201, self._location(request, obj, at_collection=False))
            self._check_preconditions(existing, if_match_header, if_none_match_header)
            if getattr(existing, SOFT_DELETE_COLUMN, None) is not None:
                raise RecordDeletedError(f"{self.accessor.component} {id} is deleted; restore it")
            updated = self._update(session, key, fields, actor)
        return self._respond(updated)

    def patch_record(
        self, id: Any, body: Any, actor: Actor, if_match_header: IfMatch = None
    ) -> Response:
        """Change the fields sent; the others keep their values."""
        key = self._key(id)
        with _hook_errors(), self.accessor.database.transaction(savepoints=False) as session:
            current = self._require(self.accessor.get_for_update(key), id)
            self._check_preconditions(current, if_match_header, None)
            updated = self._update(session, key, body.model_dump(exclude_unset=True), actor)
        return self._respond(updated)

    def delete_record(self, id: Any, actor: Actor, if_match_header: IfMatch = None) -> Response:
        """Soft-delete the record when the model has ``deleted_at``, else delete it (204)."""
        key = self._key(id)
        with _hook_errors(), self.accessor.database.transaction(savepoints=False):
            current = self._require(self.accessor.get_for_update(key), id)
            self._check_preconditions(current, if_match_header, None)
            self.accessor.delete(key, actor=actor)
        return Response(status_code=204)

    def purge_record(self, id: Any, actor: Actor) -> Response:
        """Delete a soft-deleted record for good (204), audited as ``purge``; 409 while it is
        live or for models without soft delete. Guarded as an admin route (with no auth at all,
        answered only on this machine, as restore and import are)."""
        if not self.accessor.soft_delete:
            raise SoftDeleteNotSupported(f"{self.accessor.component} has no deleted records")
        key = self._key(id)
        with _hook_errors(), self.accessor.database.transaction(savepoints=False):
            current = self._require(self.accessor.get_for_update(key, include_deleted=True), id)
            if getattr(current, SOFT_DELETE_COLUMN) is None:
                raise ConflictError(
                    f"{self.accessor.component} {id} is not deleted; delete it first"
                )
            self.accessor.purge(key, actor=actor)
        return Response(status_code=204)

    def restore_record(self, id: Any, actor: Actor, if_match_header: IfMatch = None) -> Response:
        """Clear ``deleted_at``. 409 for models without soft delete, or at ``max_records``."""
        if not self.accessor.soft_delete:
            raise SoftDeleteNotSupported(f"{self.accessor.component} does not support restore")
        key = self._key(id)
        with _hook_errors(), self.cap.transaction(savepoints=False) as session:
            current = self._require(self.accessor.get_for_update(key, include_deleted=True), id)
            self._check_preconditions(current, if_match_header, None)
            if getattr(current, SOFT_DELETE_COLUMN) is not None:
                self.cap.check()  # a restored row counts again
            self.accessor.restore(key, actor=actor)
            session.refresh(current)
        return self._respond(current)

    # -- helpers ---------------------------------------------------------------------------

    def _held_by_deleted(self, obj: Any) -> ConflictError | None:
        """The 409 that says which soft-deleted record holds a unique value ``obj`` repeats
        (where deleted rows keep their values: MariaDB, or a database not migrated)."""
        if not self.accessor.soft_delete:
            return None
        table = self.accessor.model.__table__
        key_column = table.c[self.accessor.primary_key]
        deleted_at = table.c[SOFT_DELETE_COLUMN]
        for columns in unique_sets(table):
            values = [getattr(obj, column.name) for column in columns]
            if any(value is None for value in values):
                continue
            same = [column == value for column, value in zip(columns, values, strict=True)]
            with self.accessor.database.read_session() as session:
                holders = session.execute(select(key_column, deleted_at).where(*same)).all()
            if any(deleted is None for _, deleted in holders):
                continue  # a live row holds it: the plain 409 says so
            key = holders[0][0] if holders else None
            if key is not None:
                names = ", ".join(column.name for column in columns)
                return ConflictError(
                    f"{self.accessor.component} {key} is deleted but still holds this {names}: "
                    "restore it (POST .../restore) or purge it (DELETE .../purge) first"
                )
        return None

    def _key(self, id: Any) -> Any:
        try:
            key = self.accessor.coerce_key(id)
        except ValueError:
            raise ValidationError(f"{id!r} is not a valid {self.accessor.primary_key}") from None
        return self.query.check_key(key, dialect=self._dialect())

    def _dialect(self) -> str:
        return self.accessor.database.engine.dialect.name

    def _require(self, obj: Any, id: Any) -> Any:
        return require_found(obj, NotFoundError(f"{self.accessor.component} {id} not found"))

    def _etag(self, obj: Any) -> str:
        return etag_of_bytes(self._render(obj))

    def _check_preconditions(
        self, current: Any, if_match_header: str | None, if_none_match_header: str | None
    ) -> None:
        etag = self._etag(current)
        name = f"{self.accessor.component} {getattr(current, self.accessor.primary_key)}"
        if if_match_header is not None and not if_match(if_match_header, etag):
            raise PreconditionFailedError(f"{name} has changed since that version; read it again")
        if if_none_match_header is not None and if_none_match(if_none_match_header, etag):
            raise PreconditionFailedError(f"{name} already exists")

    def _body_fields(self, body: BaseModel, key: Any) -> dict[str, Any]:
        fields = body.model_dump(exclude_unset=True)
        pk = self.accessor.primary_key
        if pk in fields and fields.pop(pk) != key:
            raise ValidationError(f"the body's {pk} differs from the one in the URL")
        for name in self.schemas.managed:
            fields.pop(name, None)
        return fields

    def _new_record(self, key: Any, fields: dict[str, Any]) -> Any:
        pk = self.accessor.primary_key
        data = {**fields, pk: key} if pk in self.schemas.create.model_fields else fields
        try:
            validated = self.schemas.create.model_validate(data)
        except PydanticValidationError as exc:
            raise _request_error(exc, "body") from None
        obj = self.accessor.model(**validated.model_dump(exclude_unset=True))
        setattr(obj, pk, key)
        return obj

    def _insert(self, session: Session, obj: Any, actor: str) -> Any:
        self.cap.check()
        self.accessor.insert(obj, actor=actor)
        session.refresh(obj)  # the stored values (rounding, defaults), so the ETag matches GET
        return obj

    def _update(self, session: Session, key: Any, fields: dict[str, Any], actor: str) -> Any:
        updated = self.accessor.update(key, actor=actor, **fields)
        session.refresh(updated)
        return updated

    def _location(self, request: Request, obj: Any, *, at_collection: bool) -> dict[str, str]:
        # The collection's path from the request's own (POST: the collection, PUT: a record),
        # so any prefix the router is mounted under is kept; url_for would walk every route.
        # Percent-encoded: a key may hold any character, a header only Latin-1.
        root, path = request.scope.get("root_path", ""), request.scope["path"]
        if root and path.startswith(root):  # servers differ on whether the path includes it
            path = path[len(root) :]
        collection = path.rstrip("/") if at_collection else path.rsplit("/", 1)[0]
        key = quote(str(getattr(obj, self.accessor.primary_key)), safe="")
        base = str(request.base_url).rstrip("/")  # scheme, host and root path
        return {"Location": f"{base}{quote(collection)}/{key}"}

    def _body(self, obj: Any) -> dict[str, Any]:
        # In column order whatever order the instance holds its values in: the same row gives
        # the same bytes, so the same ETag, on every route.
        values = obj.model_dump(mode="json")
        return {name: values[name] for name in self.accessor.columns if name in values}

    def _render(self, obj: Any) -> bytes:
        # The ETag is a hash of these bytes. pydantic's encoder: five times faster than json's.
        return _to_json(self._body(obj))

    def _respond(self, obj: Any, code: int = 200, extra: dict[str, str] | None = None) -> Response:
        content = self._render(obj)
        headers = {"ETag": etag_of_bytes(content), **(extra or {})}
        return Response(content, status_code=code, headers=headers, media_type=_JSON)


def _query_flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    try:
        return _FLAG.validate_python(raw)
    except PydanticValidationError as exc:
        raise _request_error(exc, "query", name) from None


def _request_error(exc: PydanticValidationError, *where: str) -> RequestValidationError:
    """FastAPI's 422 for input validated by hand, located like its own (``body``, ...)."""
    errors = exc.errors(include_url=False)
    return RequestValidationError([{**e, "loc": (*where, *e["loc"])} for e in errors])


def _to_json(value: Any) -> bytes:
    # A NaN stored by Python code is sent as null: JSON has no NaN.
    return pydantic_core.to_json(value, inf_nan_mode="null")


@contextmanager
def _hook_errors() -> Iterator[None]:
    # Hooks refuse a record with ValueError (the vention-storage README does): 422, rolled back.
    try:
        yield
    except ValueError as exc:
        raise ValidationError(str(exc) or "the record was refused") from exc
