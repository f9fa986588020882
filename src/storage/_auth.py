"""Who calls a route: the actor a change is recorded under, and the guards of each kind of route.

The actor is the identity the app's auth dependency set in ``request.state.actor``, else the
``X-User`` header (:func:`get_actor`, :func:`actor_dependency`). :class:`RouteAuth` holds the
dependencies that guard reads, writes and database-wide work; with none configured, the routes
that replace data answer only clients on this machine (:func:`require_local_client`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Header, HTTPException, Request
from fastapi.params import Depends

from storage.errors import ValidationError

__all__ = [
    "ANONYMOUS_ACTOR",
    "LOCAL_ONLY",
    "RouteAuth",
    "X_USER_REQUIRED",
    "actor_dependency",
    "get_actor",
    "optional_actor",
    "require_actor_header",
    "require_local_client",
]

# storage.http's logger: its RouteAuth warning keeps the name apps already filter on.
logger = logging.getLogger("storage.http")


def _require_actor(
    request: Request,
    x_user: Annotated[
        str | None,
        Header(alias="X-User", description="Who makes the change; recorded in the audit log."),
    ] = None,
) -> str:
    """FastAPI dependency: who makes a change: the identity the app's auth dependency set in
    ``request.state.actor``, else the ``X-User`` header, required on every mutation (400
    without; 422 over :data:`_MAX_ACTOR_LENGTH` characters)."""
    identity = _authenticated_actor(request)
    if identity is not None:
        return identity
    if x_user is None or not x_user.strip():
        raise HTTPException(status_code=400, detail="the X-User header is required")
    return _checked_actor(x_user.strip())


def require_actor_header(
    request: Request,
    # Left out of the document here: StorageRoute declares it required (see X_USER_REQUIRED).
    x_user: Annotated[str | None, Header(alias="X-User", include_in_schema=False)] = None,
) -> str:
    return _require_actor(request, x_user)


def get_actor(request: Request) -> str:
    """vention-storage's actor dependency (``storage.router_model.get_actor``), for an app's own
    routes: :func:`_require_actor` as one function of the request.

    Raises:
        HTTPException: 400 without an ``X-User`` header (or authenticated identity), 422 when
            it is longer than :data:`_MAX_ACTOR_LENGTH` characters.
    """
    try:
        return _require_actor(request, request.headers.get("X-User"))
    except ValidationError as exc:  # its own routes are not StorageRoutes: answer here
        raise HTTPException(status_code=422, detail=str(exc)) from None


def _authenticated_actor(request: Request) -> str | None:
    """The identity an auth dependency recorded in ``request.state.actor``, if any.

    An app whose auth dependency knows who calls sets ``request.state.actor = user.name``;
    the audit log then records that name, whatever ``X-User`` the client sends.
    """
    actor = getattr(request.state, "actor", None)
    if isinstance(actor, str) and actor.strip():
        return _checked_actor(actor.strip())
    return None


ANONYMOUS_ACTOR = "anonymous"


def actor_dependency(default: str | None) -> Callable[..., str]:
    """The actor dependency of routes whose clients may send no ``X-User``: the authenticated
    identity, else the header, else ``default``; ``default=None`` requires the header
    (:func:`_require_actor`).

    Raises:
        ValidationError: ``default`` is blank or longer than :data:`_MAX_ACTOR_LENGTH`.
    """
    if default is None:
        return require_actor_header
    if not default.strip():
        raise ValidationError("the default actor must not be blank")
    fallback = _checked_actor(default.strip())

    def actor_or_default(
        request: Request,
        # A default, not an annotation: annotations are resolved in the module, not here.
        x_user: str | None = Header(
            default=None,
            alias="X-User",
            description=f"Who makes the change; recorded in the audit log ({fallback!r} "
            "when left out).",
        ),
    ) -> str:
        identity = _authenticated_actor(request)
        if identity is not None:
            return identity
        return _checked_actor(x_user.strip()) if x_user and x_user.strip() else fallback

    return actor_or_default


_MAX_ACTOR_LENGTH = 200
"""The longest ``X-User`` accepted, on every backend: what every column that records an actor
holds (``started_by`` of a run is the narrowest)."""


_WHO = "Who makes the change; recorded in the audit log (400 without it)."
X_USER_REQUIRED = {
    "name": "X-User",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "maxLength": _MAX_ACTOR_LENGTH, "description": _WHO},
    "description": _WHO,
}


def _checked_actor(actor: str) -> str:
    if len(actor) > _MAX_ACTOR_LENGTH:
        raise ValidationError(f"the X-User header is longer than {_MAX_ACTOR_LENGTH} characters")
    return actor


optional_actor = actor_dependency(ANONYMOUS_ACTOR)
"""FastAPI dependency: the authenticated identity (see :func:`_require_actor`), else the
``X-User`` header, else ``"anonymous"``: for the routes vention-storage clients already call
without the header (``/db/restore``)."""


@dataclass(frozen=True)
class RouteAuth:
    """FastAPI dependencies that guard routes, by kind of route.

    ``read`` guards GET routes, ``write`` every mutation, ``admin`` the database-wide routes
    (export, import, backup, restore). Auth fails closed: ``admin`` left out takes the
    ``write`` guard (else the ``read`` guard), so guarding the writes never leaves the
    database's export, backup and restore open; an explicit ``admin=()`` beside other guards
    is logged as a warning. With no guard at all (the default, as vention-storage had), the
    routes that replace data (``POST /db/restore``, ``POST /db/import``) answer only clients
    on this machine (loopback) unless ``unguarded_remote_admin`` is set.

    Example::

        auth = RouteAuth(write=[Depends(require_operator)], admin=[Depends(require_admin)])
    """

    read: Sequence[Depends] = field(default=())
    write: Sequence[Depends] = field(default=())
    admin: Sequence[Depends] | None = None
    unguarded_remote_admin: bool = False
    """Let other machines restore and import although no guard is configured (not advised)."""

    def __post_init__(self) -> None:
        if self.admin is None:
            object.__setattr__(self, "admin", tuple(self.write) or tuple(self.read))
        elif not self.admin and (self.read or self.write):
            logger.warning(
                "RouteAuth(admin=()) leaves export, import, backup and restore unguarded "
                "while reads or writes are guarded"
            )

    @property
    def admin_guards(self) -> list[Depends]:
        """The ``admin`` dependencies, as a list."""
        return list(self.admin or ())

    @property
    def is_open(self) -> bool:
        """Whether no route is guarded at all."""
        return not (self.read or self.write or self.admin)

    def replacing_guards(self) -> list[Depends]:
        """The dependencies of the routes that replace or destroy data (restore, import,
        purge)."""
        if self.is_open and not self.unguarded_remote_admin:
            return [Depends(require_local_client)]
        return self.admin_guards

    @classmethod
    def every(cls, *dependencies: Depends) -> RouteAuth:
        """The same dependencies on every route."""
        return cls(read=dependencies, write=dependencies, admin=dependencies)


LOCAL_ONLY = "The app configures no auth, and the client is not on this machine"
_LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})


def require_local_client(request: Request) -> None:
    """FastAPI dependency: refuse (403) a client that is not on this machine.

    Guards the routes that replace data when an app configured no auth at all. Starlette's
    in-process ``TestClient`` counts as local.
    """
    host = request.client.host if request.client else ""
    if host in _LOCAL_HOSTS or host.startswith("127."):
        return
    raise HTTPException(
        status_code=403,
        detail=(
            "restore and import are only open to this machine while the app configures no auth:"
            " pass auth=RouteAuth(admin=[Depends(your_check)]) to bootstrap(), or "
            "RouteAuth(unguarded_remote_admin=True) to open them to the network"
        ),
    )
