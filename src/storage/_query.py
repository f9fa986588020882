"""List queries for the CRUD router: typed filters, sort orders and keyset cursors.

The query text a list route accepts::

    ?name=Alice                  equality (also written name__eq=Alice)
    ?age__gte=18&age__lt=65      comparisons: ne, lt, lte, gt, gte
    ?id__in=1,2,3                one of several values (comma-separated)
    ?name__like=Al%              like / ilike, with SQL patterns (% and _)
    ?deleted_at__isnull=false    isnull: true or false
    ?sort=-age,name              sort keys, "-" for descending

Only the model's scalar columns can be filtered and sorted. Values are converted to the
column's Python type. ``ne`` also matches NULL. In every sort NULLs come after the values when
ascending and before them when descending, on every backend, and the primary key breaks ties,
so a keyset cursor walks every row exactly once.

Anything that does not fit (an unknown field or operator, a value of the wrong type, a number
the column cannot hold, a damaged cursor) raises :class:`~storage.errors.ValidationError`,
which the routers answer with 422.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import (
    Column,
    ColumnElement,
    Enum,
    String,
    and_,
    cast,
    false,
    inspect,
    literal,
    or_,
)
from sqlmodel import SQLModel

from storage._schemas import input_annotation, integer_range, strip_optional
from storage.auditor import to_json_safe
from storage.errors import ValidationError

__all__ = ["OPERATORS", "ModelQuery", "SortKey"]

_RANGE_ERRORS = frozenset({"less_than_equal", "greater_than_equal"})


def _out_of_range(exc: PydanticValidationError) -> bool:
    return bool({error["type"] for error in exc.errors()} & _RANGE_ERRORS)


OPERATORS: Final = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "like", "ilike", "isnull")
MAX_IN_VALUES: Final = 500
_SCALARS: Final = (bool, int, float, Decimal, str, datetime, date, time, uuid.UUID)
_BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}
_MYSQL: Final = ("mysql", "mariadb")
_LAX_FLOAT: Final[TypeAdapter[float]] = TypeAdapter(float)


# The JSON schema of a query value, by the column's Python type (enums: their values).
_SCHEMAS: Final[dict[Any, dict[str, str]]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    Decimal: {"type": "number"},
    str: {"type": "string"},
    datetime: {"type": "string", "format": "date-time"},
    date: {"type": "string", "format": "date"},
    time: {"type": "string", "format": "time"},
    uuid.UUID: {"type": "string", "format": "uuid"},
}
_PHRASES: Final = {
    "eq": "equals this",
    "ne": "differs from this (NULL included)",
    "lt": "is less than this",
    "lte": "is at most this",
    "gt": "is greater than this",
    "gte": "is at least this",
    "in": "is one of these comma-separated values (1 to 500)",
    "like": "matches this SQL pattern (% any text, _ one character)",
    "ilike": "matches this SQL pattern, ignoring case",
    "isnull": "is NULL (true) or is not (false)",
}


@dataclass(frozen=True)
class SortKey:
    """One key of a sort order."""

    name: str
    descending: bool = False

    def __str__(self) -> str:
        return f"-{self.name}" if self.descending else self.name


class _Field:
    """One scalar column: its SQL expression and how to read a value for it."""

    def __init__(self, model: type[SQLModel], name: str) -> None:
        self.name = name
        self.column: Column[Any] = inspect(model).column_attrs[name].columns[0]
        self.kind, _ = strip_optional(model.model_fields[name].annotation)
        self._adapter: TypeAdapter[Any] = TypeAdapter(input_annotation(model, name))
        # Query text is text: a float column's strict body annotation (which also turns NaN
        # into text before it validates) would refuse every number written out.
        self._text = _LAX_FLOAT if self.kind is float else self._adapter

    def parse(self, raw: str, *, dialect: str) -> Any:
        """A value from query text."""
        if self.kind is str:
            if "\x00" in raw:  # SQLite would cut the value (and a LIKE pattern) there
                raise ValidationError(f"the value for {self.name} contains a NUL character")
            return raw
        try:
            value = self._text.validate_strings(raw)
        except PydanticValidationError as exc:
            if _out_of_range(exc):
                raise ValidationError(f"{raw} is out of range for {self.name}") from None
            raise ValidationError(f"{raw!r} is not a valid value for {self.name}") from None
        return self.check(value, dialect)

    def load(self, value: Any, *, dialect: str) -> Any:
        """A value from a cursor (as :func:`~storage.auditor.to_json_safe` wrote it)."""
        if value is None:
            if not self.column.nullable:
                raise ValidationError("the cursor is not valid for this list")
            return None
        try:
            return self.check(self._adapter.validate_python(value), dialect)
        except PydanticValidationError as exc:
            if _out_of_range(exc):
                raise ValidationError(f"{value} is out of range for {self.name}") from None
            raise ValidationError("the cursor is not valid for this list") from None

    def sortable(self, dialect: str) -> ColumnElement[Any]:
        """The expression to order and compare by."""
        if dialect in _MYSQL and isinstance(self.column.type, Enum):
            # MySQL orders an ENUM by its declared position but compares it as text.
            return cast(self.column, String)
        return self.column

    def bound(self, value: Any, dialect: str) -> Any:
        """``value`` as the right-hand side of a comparison with :meth:`sortable`."""
        if dialect in _MYSQL and isinstance(self.column.type, Enum):
            return cast(literal(value, self.column.type), String)
        return value

    def operators(self) -> list[str]:
        """The operators the document offers for this column: equality, ``ne`` and ``in``
        for every type, comparisons where values have an order people mean (not booleans,
        UUIDs or enums), patterns on text, ``isnull`` where the column takes NULL. (``eq``
        is the bare name, ``field=value``.)"""
        offered = ["eq", "ne", "in"]
        if self.kind not in (bool, uuid.UUID) and not _is_enum(self.kind):
            offered += ["lt", "lte", "gt", "gte"]
        if self.kind is str:
            offered += ["like", "ilike"]
        if self.column.nullable:
            offered.append("isnull")
        return offered

    def openapi_schema(self, operator: str) -> dict[str, Any]:
        """The JSON schema of a query value for ``field__operator``."""
        if operator == "isnull":
            return {"type": "boolean"}
        if operator in ("in", "like", "ilike"):
            return {"type": "string"}
        if _is_enum(self.kind):
            values = [member.value for member in self.kind]
            kind = "integer" if all(isinstance(v, int) for v in values) else "string"
            return {"type": kind, "enum": values}
        return dict(_SCHEMAS.get(self.kind, {"type": "string"}))

    def check(self, value: Any, dialect: str) -> Any:
        """``value``, when the column can hold it."""
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(f"{self.name} must be a finite number")
        holds = integer_range(self.column.type, dialect)
        if holds is not None and isinstance(value, int) and value not in holds:
            raise ValidationError(f"{value} is out of range for {self.name}")
        return value


class ModelQuery:
    """Filters, sort orders and cursors for one table model, parsed from query text.

    Args:
        model: the table model.
        primary_key: its primary-key field; it ends every sort order.
        reserved: query parameter names that are not filters (``limit``, ``sort``...).
    """

    def __init__(
        self, model: type[SQLModel], primary_key: str, *, reserved: Iterable[str] = ()
    ) -> None:
        self.primary_key = primary_key
        self.reserved = frozenset(reserved)
        self.fields = {
            attr.key: _Field(model, attr.key)
            for attr in inspect(model).column_attrs
            if attr.key in model.model_fields and _is_scalar(model, attr.key)
        }
        self._all_columns = {attr.key for attr in inspect(model).column_attrs}

    def check_key(self, value: Any, *, dialect: str) -> Any:
        """``value`` when the primary-key column can hold it.

        Raises:
            ValidationError: an integer out of the column's range.
        """
        field = self.fields.get(self.primary_key)
        return value if field is None else field.check(value, dialect)

    def openapi_parameters(self) -> list[dict[str, Any]]:
        """OpenAPI entries for the filters: per filterable column, one query parameter for each
        operator that suits its type (see :meth:`_Field.operators`), typed like the column.

        ``field__in`` is one string of comma-separated values, as the server reads it:
        generated clients send an array parameter as repeated keys, which would AND the lists.
        """
        parameters = []
        for name, field in self.fields.items():
            for operator in field.operators():
                bare = operator == "eq" and name not in self.reserved
                parameters.append(
                    {
                        "name": name if bare else f"{name}__{operator}",
                        "in": "query",
                        "required": False,
                        "schema": field.openapi_schema(operator),
                        "description": f"Only records whose {name} {_PHRASES[operator]}.",
                    }
                )
        return parameters

    # -- filters ---------------------------------------------------------------------------

    def filters(
        self, items: Iterable[tuple[str, str]], *, dialect: str
    ) -> list[ColumnElement[bool]]:
        """SQL conditions for ``field=value`` / ``field__op=value`` pairs (reserved names skipped).

        Raises:
            ValidationError: an unknown field or operator, or a value that does not fit.
        """
        conditions = []
        for key, raw in items:
            if key in self.reserved:
                continue
            name, operator = self._split(key)
            conditions.append(self._condition(self._field(name), operator, raw, dialect))
        return conditions

    def _split(self, key: str) -> tuple[str, str]:
        if key in self._all_columns:
            return key, "eq"
        name, separator, operator = key.rpartition("__")
        if not separator or name not in self._all_columns:
            raise ValidationError(f"unknown query parameter {key!r}")
        if operator not in OPERATORS:
            raise ValidationError(
                f"unknown operator {operator!r} in {key!r}; use one of {', '.join(OPERATORS)}"
            )
        return name, operator

    def _field(self, name: str) -> _Field:
        field = self.fields.get(name)
        if field is None:
            raise ValidationError(f"{name} cannot be filtered or sorted on")
        return field

    def _condition(
        self, field: _Field, operator: str, raw: str, dialect: str
    ) -> ColumnElement[bool]:
        column = field.column
        if operator == "isnull":
            if raw.lower() not in _BOOLEANS:
                raise ValidationError(f"{field.name}__isnull takes true or false")
            return column.is_(None) if _BOOLEANS[raw.lower()] else column.is_not(None)
        if operator in ("like", "ilike"):
            if field.kind is not str:
                raise ValidationError(f"{operator} works on text fields only, not {field.name}")
            pattern = field.parse(raw, dialect=dialect)  # refuses a NUL, as for equality
            return column.like(pattern) if operator == "like" else column.ilike(pattern)
        if operator == "in":
            parts = raw.split(",")
            if not raw or len(parts) > MAX_IN_VALUES:
                raise ValidationError(
                    f"{field.name}__in takes 1 to {MAX_IN_VALUES} comma-separated values"
                )
            return column.in_([field.parse(part, dialect=dialect) for part in parts])
        value = field.parse(raw, dialect=dialect)
        comparisons = {
            "eq": column.__eq__,
            "ne": column.is_distinct_from,
            "lt": column.__lt__,
            "lte": column.__le__,
            "gt": column.__gt__,
            "gte": column.__ge__,
        }
        return comparisons[operator](value)

    # -- sorting and cursors ---------------------------------------------------------------

    def sort(self, text: str | None) -> tuple[SortKey, ...]:
        """The sort keys of ``a,-b``, always ending with the primary key (ascending by default).

        Raises:
            ValidationError: an unknown or unsortable field, or a field named twice.
        """
        keys: list[SortKey] = []
        for part in (text or "").split(","):
            part = part.strip()
            if not part:
                continue
            descending = part.startswith("-")
            name = part.lstrip("+-").strip()
            if name not in self._all_columns:
                raise ValidationError(f"unknown sort field {name!r}")
            self._field(name)
            if any(key.name == name for key in keys):
                raise ValidationError(f"sort names {name!r} twice")
            keys.append(SortKey(name, descending))
        if not any(key.name == self.primary_key for key in keys):
            keys.append(SortKey(self.primary_key))
        return tuple(keys)

    def order_by(self, keys: Sequence[SortKey], *, dialect: str) -> list[ColumnElement[Any]]:
        """ORDER BY clauses for the keys, NULLs last when ascending and first when descending."""
        clauses: list[ColumnElement[Any]] = []
        for key in keys:
            field = self.fields[key.name]
            if field.column.nullable:
                is_null = field.column.is_(None)
                clauses.append(is_null.desc() if key.descending else is_null.asc())
            sortable = field.sortable(dialect)
            clauses.append(sortable.desc() if key.descending else sortable.asc())
        return clauses

    def after(
        self, keys: Sequence[SortKey], values: Sequence[Any], *, dialect: str
    ) -> ColumnElement[bool]:
        """The condition for rows that come after the row with sort ``values``, in that order."""
        clause: ColumnElement[bool] | None = None
        for key, value in reversed(list(zip(keys, values, strict=True))):
            field = self.fields[key.name]
            beyond = self._beyond(field, key.descending, value, dialect)
            if clause is None:
                clause = beyond
            else:
                clause = or_(beyond, and_(self._same(field, value, dialect), clause))
        return clause if clause is not None else false()

    def _same(self, field: _Field, value: Any, dialect: str) -> ColumnElement[bool]:
        if value is None:
            return field.column.is_(None)
        same: ColumnElement[bool] = field.sortable(dialect) == field.bound(value, dialect)
        return same

    def _beyond(
        self, field: _Field, descending: bool, value: Any, dialect: str
    ) -> ColumnElement[bool]:
        column = field.column
        if value is None:
            # NULLs are last ascending (nothing follows them) and first descending.
            return column.is_not(None) if descending else false()
        sortable, bound = field.sortable(dialect), field.bound(value, dialect)
        if descending:
            below: ColumnElement[bool] = sortable < bound
            return below
        return or_(sortable > bound, column.is_(None)) if column.nullable else sortable > bound

    def encode_cursor(self, keys: Sequence[SortKey], row: Any) -> str:
        """An opaque cursor that points just after ``row`` in the order of ``keys``."""
        payload = {
            "sort": ",".join(map(str, keys)),
            "after": [to_json_safe(getattr(row, key.name)) for key in keys],
        }
        text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        return base64.urlsafe_b64encode(text.encode()).decode("ascii").rstrip("=")

    def decode_cursor(self, keys: Sequence[SortKey], cursor: str, *, dialect: str) -> list[Any]:
        """The sort values a cursor points after.

        Raises:
            ValidationError: the cursor is damaged or was made for another sort order.
        """
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        except (ValueError, binascii.Error, UnicodeError):
            raise ValidationError("the cursor is not valid") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("after"), list):
            raise ValidationError("the cursor is not valid")
        if payload.get("sort") != ",".join(map(str, keys)):
            raise ValidationError("the cursor was made for another sort order")
        values = payload["after"]
        if len(values) != len(keys):
            raise ValidationError("the cursor is not valid")
        return [
            self.fields[key.name].load(value, dialect=dialect)
            for key, value in zip(keys, values, strict=True)
        ]


def _is_enum(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, enum.Enum)


def _is_scalar(model: type[SQLModel], name: str) -> bool:
    kind, _ = strip_optional(model.model_fields[name].annotation)
    return isinstance(kind, type) and (issubclass(kind, enum.Enum) or kind in _SCALARS)
