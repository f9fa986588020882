"""What every router shares: error-to-status mapping, the ``X-User`` actor, auth dependencies.

Routers are built with ``route_class=StorageRoute``, so a :class:`~storage.errors.StorageError`
raised anywhere in an endpoint becomes the same JSON error response in every router, without
the host app registering exception handlers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import IO, Annotated, Any, ClassVar

from fastapi import Header, HTTPException, Request, Response
from fastapi.dependencies.utils import get_dependant, get_flat_params
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.routing import Match
from starlette.types import Message, Receive

from storage._auth import (
    ANONYMOUS_ACTOR,
    LOCAL_ONLY,
    X_USER_REQUIRED,
    RouteAuth,
    get_actor,
    require_actor_header,
    require_local_client,
)
from storage._openapi import (
    UNAVAILABLE,
    ErrorBody,
    ValidationErrorBody,
    error_model,
    uses_dependency,
)
from storage.errors import (
    ConflictError,
    DatabaseBusyError,
    DatabaseUnavailableError,
    MissingDependencyError,
    NotFoundError,
    OperationCancelledError,
    PayloadTooLargeError,
    PreconditionFailedError,
    RestoreError,
    SchemaDriftError,
    StorageError,
    ValidationError,
)

__all__ = [
    "ANONYMOUS_ACTOR",
    "ErrorBody",
    "RouteAuth",
    "StorageRoute",
    "ValidationErrorBody",
    "get_actor",
]

logger = logging.getLogger("storage.http")

# Most specific first: the first class the error is an instance of decides the status.
_STATUS_BY_ERROR: tuple[tuple[type[StorageError], int], ...] = (
    (NotFoundError, 404),
    (PreconditionFailedError, 412),
    (PayloadTooLargeError, 413),
    (ConflictError, 409),
    (ValidationError, 422),
    (RestoreError, 422),
    (DatabaseBusyError, 503),
    (DatabaseUnavailableError, 503),
    (MissingDependencyError, 503),
    (SchemaDriftError, 503),
    # nginx's "client closed request": nobody reads it, the access log shows why it ended.
    (OperationCancelledError, 499),
)
# Worth retrying soon: the database is there, or will be, and only needs a moment.
_RETRY_LATER = (DatabaseBusyError, DatabaseUnavailableError)


def _error_response(exc: StorageError) -> JSONResponse:
    """The JSON response for a storage error: ``{"detail": message}`` and its status."""
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            headers = {"Retry-After": "1"} if isinstance(exc, _RETRY_LATER) else None
            return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)
    logger.error("storage error in a route: %s", exc, exc_info=exc)
    return JSONResponse({"detail": "internal database error"}, status_code=500)


class StorageRoute(APIRoute):
    """An ``APIRoute`` that turns storage errors into their HTTP responses, and documents them.

    The document it gives the route: the body of each error status declared
    (``{"detail": ...}``, :class:`ErrorBody`; for 422 :class:`ValidationErrorBody`); the 503 of
    a busy or unreachable database, with ``Retry-After`` (unless :attr:`uses_database` is
    false); the 403 of :func:`require_local_client`; and ``X-User`` as a required header
    where the route's actor has no default (``actor_dependency(None)``).
    """

    kind: ClassVar[str | None] = None
    """What the route does, for metrics: ``None`` lets its method and response decide
    (``read``, ``write``, ``stream``); :class:`AdminRoute` says ``admin``."""

    uses_database: ClassVar[bool] = True
    """Whether the route's work reads the database: its document then declares the 503 of a
    database that is busy or unreachable (with ``Retry-After``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        responses = self._documented_responses(path, endpoint, kwargs)
        added = 422 not in responses and "422" not in responses
        if added:
            responses[422] = {"description": "Validation Error", "model": ValidationErrorBody}
        super().__init__(path, endpoint, **{**kwargs, "responses": responses})
        if added and not (self.body_field or get_flat_params(self.dependant)):
            # Nothing to validate: FastAPI would not document a 422 either.
            self.responses.pop(422)
            self.response_fields.pop(422, None)

    def _documented_responses(
        self, path: str, endpoint: Callable[..., Any], kwargs: dict[str, Any]
    ) -> dict[int | str, Any]:
        """The route's ``responses``, completed (and ``X-User`` declared in ``kwargs``)."""
        responses = dict(kwargs.get("responses") or {})
        guards = kwargs.get("dependencies") or ()
        if self.uses_database:
            given = responses.pop(503, None) or responses.pop("503", None) or {}
            headers = {**UNAVAILABLE["headers"], **given.get("headers", {})}
            responses[503] = {**UNAVAILABLE, **given, "headers": headers}
        if any(getattr(d, "dependency", None) is require_local_client for d in guards):
            responses.setdefault(403, {"description": LOCAL_ONLY})
        if _needs_actor(path, endpoint, guards):
            # The dependency reads the header itself (400 without it): FastAPI would document
            # it as optional.
            responses.setdefault(400, {"description": "The X-User header is missing"})
            extra = dict(kwargs.get("openapi_extra") or {})
            extra["parameters"] = [*extra.get("parameters", []), X_USER_REQUIRED]
            kwargs["openapi_extra"] = extra
        for code, response in responses.items():
            if (
                str(code).isdigit()
                and int(code) >= 400
                and not {"model", "content"} & set(response)
            ):
                responses[code] = {**response, "model": error_model(int(code))}
        return responses

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except StorageError as exc:
                return _error_response(exc)
            except RequestValidationError as exc:
                if _encodable(exc.errors()):
                    raise  # the app's handler answers, as for any other route
                # FastAPI's own handler echoes the input, and cannot encode a lone surrogate.
                detail = jsonable_encoder(exc.errors())
                body = json.dumps({"detail": detail}, ensure_ascii=True).encode()
                return Response(body, status_code=422, media_type="application/json")

        return handle


class AdminRoute(StorageRoute):
    """A :class:`StorageRoute` for database-wide work (export, backup, import, restore)."""

    kind = "admin"


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    """The 405 answer, with an ``Allow`` header listing every method the path takes (FastAPI
    routes each method of a path separately, so Starlette's own names only one route's).

    Register it with ``app.add_exception_handler(405, method_not_allowed)`` (``bootstrap``
    does)."""
    routes = request.app.router.routes
    methods = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return JSONResponse(
        {"detail": "Method Not Allowed"},
        status_code=405,
        headers={"Allow": ", ".join(methods)},
    )


def _needs_actor(path: str, endpoint: Callable[..., Any], guards: Sequence[Any]) -> bool:
    if any(getattr(guard, "dependency", None) is require_actor_header for guard in guards):
        return True
    return uses_dependency(get_dependant(path=path, call=endpoint), require_actor_header)


def _encodable(errors: Sequence[Any]) -> bool:
    try:
        json.dumps(jsonable_encoder(errors), ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError):
        return False
    return True


def limit_body(max_bytes: int, kind: str | None = None) -> type[StorageRoute]:
    """A :class:`StorageRoute` class that refuses request bodies over ``max_bytes`` with 413
    (``kind``: its :attr:`StorageRoute.kind`).

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    sent without one (chunked) is counted while it streams in and cut off at the limit, so an
    oversize upload is never stored in full.
    """
    message = f"the request body is larger than the limit of {max_bytes} bytes"

    body_kind = kind

    class LimitedBodyRoute(StorageRoute):
        kind = body_kind

        def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
            responses = {413: {"description": message}, **(kwargs.get("responses") or {})}
            super().__init__(path, endpoint, **{**kwargs, "responses": responses})

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                declared = request.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    return _error_response(PayloadTooLargeError(message))
                receive = _counting_receive(request.receive, max_bytes, message)
                return await handler(Request(request.scope, receive))

            return handle

    return LimitedBodyRoute


def _counting_receive(receive: Receive, max_bytes: int, message: str) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        event = await receive()
        received += len(event.get("body", b""))
        if received > max_bytes:
            # FastAPI turns other errors raised while it reads the body into a 400.
            raise HTTPException(status_code=413, detail=message)
        return event

    return counted


IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description="Write only if the record still has this ETag ('*')."),
]
"""The ``If-Match`` header of a write, for every router that takes one: ``*`` matches any
version (see :func:`storage._etags.if_match`); a stale ETag is a 412."""

# The largest OFFSET every backend accepts (a signed 64-bit integer); beyond it SQLite's driver
# overflows, so the routes refuse it with a 422 instead.
MAX_OFFSET = 2**63 - 1


@asynccontextmanager
async def uploaded_file(request: Request, field: str = "file") -> AsyncIterator[IO[bytes]]:
    """The file of a ``multipart/form-data`` body, read in the endpoint rather than before it,
    so that the route's guards run before a byte of the upload is read; closed after.

    Raises:
        ValidationError: the body is not multipart, or has no file in ``field`` (422).
    """
    try:
        form = await request.form(max_files=1, max_fields=16)
    except (MultiPartException, AssertionError, StarletteHTTPException) as exc:
        # Starlette reports a malformed body as a 400 ``HTTPException`` inside an app.
        if isinstance(exc, StarletteHTTPException) and exc.status_code != 400:
            raise
        raise ValidationError(
            f"send the file as multipart/form-data, in the field {field!r}"
        ) from exc
    try:
        upload = form.get(field)
        if not isinstance(upload, StarletteUploadFile):
            raise ValidationError(f"send the file as multipart/form-data, in the field {field!r}")
        yield upload.file
    finally:
        await form.close()


@asynccontextmanager
async def cancelled_on_disconnect(request: Request) -> AsyncIterator[threading.Event]:
    """An event set as soon as the client of ``request`` goes away, for work that runs on a
    worker thread to check and stop (enter it once the body has been read)."""
    cancelled = threading.Event()

    async def watch() -> None:
        # Once the body is read, the server's next message is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            await asyncio.sleep(0.1)
        cancelled.set()

    watcher = asyncio.create_task(watch())
    try:
        yield cancelled
    finally:
        watcher.cancel()


def file_upload_body(description: str, field: str = "file") -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that takes one file with :func:`uploaded_file`."""
    file = {"type": "string", "format": "binary", "description": description}
    schema = {"type": "object", "properties": {field: file}, "required": [field]}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }
