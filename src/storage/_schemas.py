"""Request and response schemas derived from a table model: typed OpenAPI and strict bodies.

For a table model ``User`` the CRUD router documents and validates with:

- ``UserCreate``, the POST body: every column except a generated primary key and the columns
  the server manages (``deleted_at`` and any ``read_only`` ones). Required fields stay required.
- ``UserUpdate``, the PATCH body: every writable column, each optional. ``null`` is accepted
  only where the column is nullable.
- ``UserReplace``, the PUT body: like ``UserUpdate``, and it also accepts the primary key and
  the server-managed columns, so a record read with GET can be sent back as it is. The router
  ignores the server-managed values and refuses a primary key that differs from the URL.
- ``UserRead``, the response: every column, each required (a response always carries it),
  the primary key never ``null``.

Bodies are strict: an unknown field, a string in a number or boolean field, NaN and infinity
are refused. Column limits the model does not state (a ``String(50)`` length, a
``Numeric(10, 3)`` precision) are added, so a value that cannot be stored is a 422 instead of
a database error. Datetimes are stored the way the column wants them: naive input for a
timezone-aware column is taken as UTC, aware input for a naive column is converted to UTC.
"""

from __future__ import annotations

import math
import types
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

from annotated_types import MaxLen
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    create_model,
)
from pydantic.fields import FieldInfo
from sqlalchemy import BigInteger, Column, Integer, Numeric, SmallInteger, String, inspect
from sqlalchemy.types import TypeEngine
from sqlmodel import SQLModel

from storage._rows import SOFT_DELETE_COLUMN
from storage.auditor import as_utc, naive_utc

__all__ = [
    "CrudSchemas",
    "crud_schemas",
    "input_annotation",
    "integer_range",
    "strip_optional",
]

_STRICT_SCALARS: tuple[type, ...] = (bool, int, float, str)
_BODY_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())


@dataclass(frozen=True)
class CrudSchemas:
    """The generated pydantic models of one table model, and its server-managed fields."""

    create: type[BaseModel]
    update: type[BaseModel]
    replace: type[BaseModel]
    read: type[BaseModel]
    managed: tuple[str, ...]


def crud_schemas(
    model: type[SQLModel], primary_key: str, *, read_only: Collection[str] = ()
) -> CrudSchemas:
    """Derive the Create, Update, Replace and Read models of a table model (cached per model).

    Args:
        model: the table model.
        primary_key: the name of its primary-key field.
        read_only: more server-managed fields (e.g. ``created_at``), left out of request bodies.

    Raises:
        ValueError: a ``read_only`` name is not a column of the model.
    """
    return _derive(model, primary_key, frozenset(read_only))


@cache
def _derive(model: type[SQLModel], primary_key: str, read_only: frozenset[str]) -> CrudSchemas:
    columns = [attr.key for attr in inspect(model).column_attrs]
    unknown = sorted(read_only.difference(columns))
    if unknown:
        raise ValueError(f"{model.__name__} has no column {unknown[0]!r} to make read-only")
    fields = model.model_fields
    managed = tuple(n for n in columns if n == SOFT_DELETE_COLUMN or n in read_only)
    writable = tuple(n for n in columns if n != primary_key and n not in managed)
    key_is_generated = not fields[primary_key].is_required()

    create: dict[str, Any] = {}
    update: dict[str, Any] = {}
    replace: dict[str, Any] = {}
    read: dict[str, Any] = {}
    for name in columns:
        info = fields[name]
        # A stored record always has its key, though the table model leaves it None until
        # the database generates it.
        shown = strip_optional(info.annotation)[0] if name == primary_key else info.annotation
        read[name] = (shown, Field(title=info.title, description=info.description))
        typed = input_annotation(model, name)
        optional = (typed, Field(None, title=info.title, description=info.description))
        if name == primary_key and not key_is_generated:
            create[name] = (_addressable(typed), _copy_default(info))
        elif name in writable:
            create[name] = (typed, _copy_default(info))
        if name in writable:
            update[name] = optional
        replace[name] = optional

    title = model.__name__
    return CrudSchemas(
        create=_model(f"{title}Create", f"The fields to create a {title}.", create),
        update=_model(f"{title}Update", f"The fields of a {title} to change.", update),
        replace=_model(f"{title}Replace", f"A {title}; fields not sent are kept.", replace),
        read=create_model(f"{title}Read", __doc__=f"A stored {title}.", **read),
        managed=managed,
    )


def _addressable(typed: Any) -> Any:
    # A key chosen by the client becomes a URL path segment: it must be one, non-empty segment.
    base, _ = strip_optional(typed)
    if base is str or get_origin(base) is Annotated and get_args(base)[0] is str:
        return Annotated[base, StringConstraints(min_length=1, pattern=r"^[^/]+$")]
    return typed


def _model(name: str, doc: str, fields: dict[str, Any]) -> type[BaseModel]:
    return create_model(name, __config__=_BODY_CONFIG, __doc__=doc, **fields)


def _copy_default(info: FieldInfo) -> Any:
    described: dict[str, Any] = {"title": info.title, "description": info.description}
    if info.default_factory is not None:
        described["default_factory"] = info.default_factory
    elif not info.is_required():
        described["default"] = info.default
    return Field(**described)


def input_annotation(model: type[SQLModel], name: str) -> Any:
    """The annotation a request value for column ``name`` is validated with (see module doc)."""
    info = model.model_fields[name]
    column: Column[Any] = inspect(model).column_attrs[name].columns[0]
    base, optional = strip_optional(info.annotation)
    constraints: list[Any] = [m for m in info.metadata if not _is_sqlmodel_metadata(m)]
    if base in _STRICT_SCALARS:
        constraints.append(Strict())
    if base is int:  # no backend stores more than 64 bits; beyond, drivers overflow
        constraints.append(Field(ge=-(2**63), le=2**63 - 1))
    if base is str:
        constraints.append(AfterValidator(_no_nul))
    if base is str and isinstance(column.type, String) and column.type.length:
        if not any(isinstance(m, MaxLen) for m in constraints):
            constraints.append(MaxLen(column.type.length))
    if base is Decimal and isinstance(column.type, Numeric) and column.type.precision:
        scale = column.type.scale
        constraints.append(Field(max_digits=column.type.precision, decimal_places=scale))
    if base in (float, Decimal):
        constraints.append(BeforeValidator(_non_finite_as_text))
    if base is datetime:
        aware = bool(getattr(column.type, "timezone", False))
        constraints.append(AfterValidator(as_utc if aware else naive_utc))
    typed = Annotated[(base, *constraints)] if constraints else base
    return typed | None if optional else typed


def integer_range(column_type: TypeEngine[Any], dialect: str) -> range | None:
    """The integers a column of ``column_type`` holds on ``dialect``; ``None`` when it is not
    an integer column. One rule for request filters and CSV import alike: SQLite stores 64
    bits in any integer column; the servers 16 (``SMALLINT``), 32 (``INTEGER``) or 64
    (``BIGINT``)."""
    if not isinstance(column_type, Integer):
        return None
    if dialect == "sqlite" or isinstance(column_type, BigInteger):
        bits = 64
    else:
        bits = 16 if isinstance(column_type, SmallInteger) else 32
    return range(-(2 ** (bits - 1)), 2 ** (bits - 1))


def strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None`` (or ``Optional[T]``), else ``(annotation, False)``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not types.NoneType]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _is_sqlmodel_metadata(item: Any) -> bool:
    return type(item).__module__.startswith("sqlmodel")


def _no_nul(value: str) -> str:
    # PostgreSQL refuses NUL in text, SQLite cuts strings (and LIKE patterns) at it.
    if "\x00" in value:
        raise ValueError("text may not contain NUL characters")
    return value


def _non_finite_as_text(value: Any) -> Any:
    # Refused either way, but a NaN echoed back in the 422 body would break its JSON encoding.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
