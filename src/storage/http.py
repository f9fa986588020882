"""What every router shares: error-to-status mapping, the ``X-User`` actor, auth dependencies.

Routers are built with ``route_class=StorageRoute``, so a :class:`~storage.errors.StorageError`
raised anywhere in an endpoint becomes the same JSON error response in every router, without
the host app registering exception handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Header, HTTPException, Request, Response
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import Message, Receive

from storage.errors import (
    ConflictError,
    DatabaseBusyError,
    DatabaseUnavailableError,
    MissingDependencyError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    RestoreError,
    StorageError,
    ValidationError,
)

__all__ = [
    "MAX_OFFSET",
    "STATUS_BY_ERROR",
    "RouteAuth",
    "StorageRoute",
    "error_response",
    "limit_body",
    "optional_actor",
    "require_actor",
]

logger = logging.getLogger("storage.http")

# Most specific first: the first class the error is an instance of decides the status.
STATUS_BY_ERROR: tuple[tuple[type[StorageError], int], ...] = (
    (NotFoundError, 404),
    (PreconditionFailedError, 412),
    (PayloadTooLargeError, 413),
    (ConflictError, 409),
    (ValidationError, 422),
    (RestoreError, 422),
    (DatabaseBusyError, 503),
    (DatabaseUnavailableError, 503),
    (MissingDependencyError, 503),
)
# Worth retrying soon: the database is there, or will be, and only needs a moment.
_RETRY_LATER = (DatabaseBusyError, DatabaseUnavailableError)


def error_response(exc: StorageError) -> JSONResponse:
    """The JSON response for a storage error: ``{"detail": message}`` and its status."""
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            headers = {"Retry-After": "1"} if isinstance(exc, _RETRY_LATER) else None
            return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)
    logger.error("storage error in a route: %s", exc, exc_info=exc)
    return JSONResponse({"detail": "internal database error"}, status_code=500)


class StorageRoute(APIRoute):
    """An ``APIRoute`` that turns storage errors into their HTTP responses."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except StorageError as exc:
                return error_response(exc)

        return handle


def limit_body(max_bytes: int) -> type[StorageRoute]:
    """A :class:`StorageRoute` class that refuses request bodies over ``max_bytes`` with 413.

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    sent without one (chunked) is counted while it streams in and cut off at the limit, so an
    oversize upload is never stored in full.
    """
    message = f"the request body is larger than the limit of {max_bytes} bytes"

    class LimitedBodyRoute(StorageRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                declared = request.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    return error_response(PayloadTooLargeError(message))
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


def require_actor(
    x_user: Annotated[
        str | None,
        Header(alias="X-User", description="Who makes the change; recorded in the audit log."),
    ] = None,
) -> str:
    """FastAPI dependency: the ``X-User`` header, required on every mutation (400 without)."""
    if x_user is None or not x_user.strip():
        raise HTTPException(status_code=400, detail="the X-User header is required")
    return x_user.strip()


ANONYMOUS_ACTOR = "anonymous"

# The largest OFFSET every backend accepts (a signed 64-bit integer); beyond it SQLite's driver
# overflows, so the routes refuse it with a 422 instead.
MAX_OFFSET = 2**63 - 1


def optional_actor(
    x_user: Annotated[
        str | None,
        Header(alias="X-User", description="Who makes the change; recorded in the audit log."),
    ] = None,
) -> str:
    """FastAPI dependency: the ``X-User`` header, or ``"anonymous"`` when it is absent.

    For the routes vention-storage clients already call without the header (``/db/restore``).
    """
    return x_user.strip() if x_user and x_user.strip() else ANONYMOUS_ACTOR


@dataclass(frozen=True)
class RouteAuth:
    """FastAPI dependencies that guard routes, by kind of route.

    ``read`` guards GET routes, ``write`` every mutation, ``admin`` the database-wide routes
    (export, import, backup, restore). The default guards nothing, as vention-storage did.

    Example::

        auth = RouteAuth(write=[Depends(require_operator)], admin=[Depends(require_admin)])
    """

    read: Sequence[Depends] = field(default=())
    write: Sequence[Depends] = field(default=())
    admin: Sequence[Depends] = field(default=())

    @classmethod
    def every(cls, *dependencies: Depends) -> RouteAuth:
        """The same dependencies on every route."""
        return cls(read=dependencies, write=dependencies, admin=dependencies)
