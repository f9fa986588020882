"""What the OpenAPI document says beyond what FastAPI infers, so that generated clients can
trust it: short operation ids, the error bodies, response headers, file downloads.

Clients generated from ``/openapi.json`` (openapi-python-client and the like) name their
functions after operation ids and parse only the statuses, bodies and media types the document
declares; docs/clients.md shows how to generate one.

- **Operation ids** are short and stable: ``list_workcells``, ``get_workcell``,
  ``create_workcell``, ... for a model's routes (:func:`resource_names`), and fixed names for
  the ``/db`` and program routes (``db_health``, ``download_backup``, ``start_run``).
- **Errors** are documented with their bodies: :class:`ErrorBody` (``{"detail": "..."}``) and,
  for 422, :class:`ValidationErrorBody`. Every route that reads the database also declares its
  503, with ``Retry-After``.
- **Response headers** (:data:`ETAG`, :data:`LOCATION`, ...) are declared where the routes send
  them; :func:`file_response` declares a download with its media type and a binary body.
- **Endpoint signatures**, which FastAPI reads to write the parameters: the routers' endpoints
  are methods of a small class, and :func:`storage._endpoints.typed_endpoint` puts in the types
  and defaults that depend on the router's options (a model's key type, a router's limits).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BINARY",
    "CONTENT_DISPOSITION",
    "ETAG",
    "LINK",
    "LOCATION",
    "NEXT_CURSOR",
    "RETRY_AFTER",
    "TOTAL_COUNT",
    "UNAVAILABLE",
    "ErrorBody",
    "ValidationErrorBody",
    "ValidationIssue",
    "error_model",
    "file_response",
    "header",
    "plural",
    "resource_names",
    "singular",
    "snake_case",
    "uses_dependency",
]


class ErrorBody(BaseModel):
    """The body of every error answer: what went wrong, in words."""

    detail: str = Field(description="What went wrong; never SQL text, bound values or a long echo.")


class ValidationIssue(BaseModel):
    """One field of a request that failed validation, as FastAPI reports it."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(description="Where: the part of the request, then the field.")
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """The body of a 422: one message, or one entry per field that failed validation."""

    detail: str | list[ValidationIssue]


def error_model(status: int) -> type[BaseModel]:
    """The body model of an error status: :class:`ValidationErrorBody` for 422, else
    :class:`ErrorBody`."""
    return ValidationErrorBody if status == 422 else ErrorBody


# -- response headers ----------------------------------------------------------------------


def header(description: str, *, required: bool = False, kind: str = "string") -> dict[str, Any]:
    """An OpenAPI header object: ``required`` when every answer of that status carries it."""
    return {"description": description, "required": required, "schema": {"type": kind}}


ETAG = header(
    "The record's version: send it back in If-Match (write only if unchanged) or "
    "If-None-Match (304 while unchanged).",
    required=True,
)
LOCATION = header("The URL of the created resource.", required=True)
TOTAL_COUNT = header("How many rows match the filters, over every page.", kind="integer")
LINK = header('The next page, as <url>; rel="next"; only when more rows follow.')
NEXT_CURSOR = header("The cursor of the next page; only when more rows follow.")
RETRY_AFTER = header(
    "Seconds to wait before retrying; sent when the database was busy or could not be reached.",
    kind="integer",
)
CONTENT_DISPOSITION = header("attachment, with the file's name.", required=True)

UNAVAILABLE: dict[str, Any] = {
    "description": "The database is busy or cannot be reached (retry after Retry-After), or "
    "a dependency the route needs is missing",
    "headers": {"Retry-After": RETRY_AFTER},
}
"""The 503 every route that uses the database can answer."""

BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def file_response(media_type: str, description: str, *, attachment: bool = True) -> dict[str, Any]:
    """The 200 response of a download: ``media_type`` with a binary body (and the
    ``Content-Disposition`` header of an ``attachment``), and no JSON entry."""
    response: dict[str, Any] = {
        "description": description,
        "content": {media_type: {"schema": BINARY}},
    }
    if attachment:
        response["headers"] = {"Content-Disposition": CONTENT_DISPOSITION}
    return response


# -- operation ids -------------------------------------------------------------------------

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_IDENTIFIER = re.compile(r"[^0-9a-zA-Z]+")
_SIBILANT_ENDINGS = ("s", "x", "z", "ch", "sh")


def snake_case(name: str) -> str:
    """``WorkCell`` -> ``work_cell``, ``work-cells`` -> ``work_cells``, ``HTTPLog`` ->
    ``http_log``."""
    words = _WORD_BOUNDARY.sub("_", name)
    return _NOT_IDENTIFIER.sub("_", words).strip("_").lower()


def plural(word: str) -> str:
    """The English plural of a snake-case noun, by the regular rules (``cell`` -> ``cells``,
    ``box`` -> ``boxes``, ``category`` -> ``categories``)."""
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return f"{word[:-1]}ies"
    if word.endswith(_SIBILANT_ENDINGS):
        return f"{word}es"
    return f"{word}s"


def singular(word: str) -> str:
    """The singular of a regular English plural (``cells`` -> ``cell``), else ``word``."""
    if word.endswith("ies") and len(word) > 3:
        return f"{word[:-3]}y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 1:
        return word[:-1]
    return word


def resource_names(
    model_name: str, component: str, override: tuple[str, str] | None = None
) -> tuple[str, str]:
    """The ``(singular, plural)`` nouns of a model's operation ids (``get_{singular}``,
    ``list_{plural}``).

    The component (the URL prefix, unique in an app) decides: when it is the model's name or
    a plural of it, the model's name in snake case is the singular (``Workcell`` at
    ``workcells``: ``workcell``, ``workcells``); otherwise the component is taken for a
    plural and made singular by the regular rules. ``override`` gives both names instead, for
    irregular nouns (``("person", "people")``).

    Raises:
        ValueError: ``override`` holds a name that is not a Python identifier, or twice the
            same name.
    """
    if override is not None:
        one, many = override
        if not (one.isidentifier() and many.isidentifier()) or one == many:
            raise ValueError(f"operation names must be two different identifiers, not {override!r}")
        return one, many
    model = snake_case(model_name)
    prefix = snake_case(component) or model
    if prefix in (model, plural(model), f"{model}s"):
        return model, prefix if prefix != model else plural(model)
    one = singular(prefix)
    return one, prefix if prefix != one else plural(one)


# -- dependencies --------------------------------------------------------------------------


def uses_dependency(dependant: Dependant, call: Callable[..., Any]) -> bool:
    """Whether ``call`` is among the dependencies of ``dependant``, at any depth."""
    return any(sub.call is call for sub in _walk(dependant))


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _walk(sub)
