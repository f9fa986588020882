r"""The CSV conventions of exports and imports: every column value as one cell, losslessly.

- **NULL** is the cell ``\N`` (as in PostgreSQL's and MySQL's text formats). An empty cell is
  the empty string in a text column and NULL in any other column.
- **Values**: booleans ``true``/``false``; integers and floats as Python writes them, decimals
  exactly; datetimes, dates and times in ISO 8601 (a datetime without an offset is UTC);
  intervals in seconds; UUIDs in their canonical form; JSON columns as JSON text; binary as
  base64; enums by the name the database stores.
- **Spreadsheet safety**: in every column that is not a number, a cell starting with ``=``,
  ``+``, ``-``, ``@``, a tab, a carriage return or ``'`` (and a text that is exactly ``\N``)
  is written with a leading ``'``: spreadsheets then show it as text instead of running it as
  a formula, and import removes that one ``'`` again.
"""

from __future__ import annotations

import base64
import enum
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    String,
    Time,
    Uuid,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from storage._schemas import integer_range
from storage.auditor import UTCDateTime

__all__ = ["ColumnCodec", "NULL"]

NULL = "\\N"

_Kind = Literal[
    "text", "int", "float", "decimal", "bool", "datetime", "date", "time", "interval", "uuid",
    "json", "enum", "bytes",
]  # fmt: skip

# Checked in this order: Enum is a String, Float a Numeric, Interval wraps a DateTime.
_KINDS: tuple[tuple[type[TypeEngine[Any]], _Kind], ...] = (
    (Interval, "interval"),
    (Boolean, "bool"),
    (Enum, "enum"),
    (JSON, "json"),
    (Uuid, "uuid"),
    (DateTime, "datetime"),
    (Date, "date"),
    (Time, "time"),
    (Integer, "int"),
    (Float, "float"),
    (Numeric, "decimal"),
    (LargeBinary, "bytes"),
)
_NUMBERS: frozenset[_Kind] = frozenset({"int", "float", "decimal"})
_RISKY = ("=", "+", "-", "@", "\t", "\r", "'")
_INTEGER = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _kind_of(type_: TypeEngine[Any]) -> tuple[_Kind, TypeEngine[Any]]:
    candidates = [type_]
    if isinstance(type_, TypeDecorator):
        candidates.append(type_.impl_instance)
    for candidate in candidates:
        for sa_type, kind in _KINDS:
            if isinstance(candidate, sa_type):
                return kind, candidate
    return "text", candidates[-1]


@dataclass(frozen=True)
class ColumnCodec:
    """Writes one column's values as CSV cells and reads them back, checking them."""

    column: Column[Any]
    kind: _Kind
    type_: TypeEngine[Any]
    nullable: bool
    dialect: str = ""

    @classmethod
    def for_column(cls, column: Column[Any], dialect: str = "") -> ColumnCodec:
        """The codec for a table column; ``dialect`` (``sqlite``, ``postgresql``, ...) is the
        database cells are read for: it decides the integers a column holds."""
        kind, type_ = _kind_of(column.type)
        # A missing autoincrement key is assigned by the database.
        generated = column.table.autoincrement_column is column
        return cls(column, kind, type_, bool(column.nullable) or generated, dialect)

    def encode(self, value: Any) -> str:
        """The cell for a value read from the database."""
        if value is None:
            return NULL
        text = self._to_text(value)
        if self.kind not in _NUMBERS and (text.startswith(_RISKY) or text == NULL):
            return "'" + text
        return text

    def decode(self, cell: str) -> Any:
        """The value for a cell.

        Raises:
            ValueError: the cell is not a valid value for the column (the message says why).
        """
        # An empty cell is a value of text and bytes (base64 of b""), and NULL for the rest.
        if cell == NULL or (cell == "" and self.kind not in ("text", "bytes")):
            value = None
        else:
            if self.kind not in _NUMBERS and cell.startswith("'"):
                cell = cell[1:]
            value = self._from_text(cell)
        if value is None and not self.nullable:
            raise ValueError("a value is required (the column is NOT NULL)")
        return value

    def _to_text(self, value: Any) -> str:
        kind = self.kind
        if kind == "bool":
            return "true" if value else "false"
        if kind == "float" or (kind == "decimal" and isinstance(value, float)):
            return repr(float(value))
        if kind in ("datetime", "date", "time"):
            return str(value.isoformat())
        if kind == "interval":
            return repr(value.total_seconds())
        if kind == "json":
            return json.dumps(value, ensure_ascii=False)
        if kind == "enum" and isinstance(value, enum.Enum):
            return value.name
        if kind == "bytes":
            return base64.b64encode(bytes(value)).decode("ascii")
        return str(value)

    def _from_text(self, cell: str) -> Any:
        try:
            return getattr(self, f"_read_{self.kind}")(cell)
        except ArithmeticError as exc:  # e.g. an interval too long for timedelta
            raise ValueError(f"{show_value(cell)} is out of range ({exc})") from None

    def _read_text(self, cell: str) -> str:
        length = getattr(self.type_, "length", None) if isinstance(self.type_, String) else None
        if length is not None and len(cell) > length:
            raise ValueError(f"the text is longer than {length} characters")
        return cell

    def _read_int(self, cell: str) -> int:
        if not _INTEGER.fullmatch(cell.strip()):
            raise ValueError(f"{show_value(cell)} is not an integer")
        value = int(cell)
        holds = integer_range(self.type_, self.dialect)
        if holds is not None and value not in holds:
            bits = (holds.stop - holds.start).bit_length() - 1
            raise ValueError(f"{value} is out of range for a {bits}-bit integer")
        return value

    def _read_float(self, cell: str) -> float:
        try:
            return float(cell)
        except ValueError:
            raise ValueError(f"{show_value(cell)} is not a number") from None

    def _read_decimal(self, cell: str) -> Decimal:
        try:
            value = Decimal(cell.strip())
        except InvalidOperation:
            raise ValueError(f"{show_value(cell)} is not a decimal number") from None
        precision = getattr(self.type_, "precision", None)
        scale = getattr(self.type_, "scale", None) or 0
        if not value.is_finite():
            raise ValueError(f"{show_value(cell)} is not a finite decimal number")
        if precision is not None and value and value.adjusted() >= precision - scale:
            raise ValueError(f"{cell} does not fit NUMERIC({precision}, {scale})")
        return value

    def _read_bool(self, cell: str) -> bool:
        word = cell.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(f"{show_value(cell)} is not a boolean (use true or false)")

    def _read_datetime(self, cell: str) -> datetime:
        try:
            value = datetime.fromisoformat(cell.strip())
        except ValueError:
            raise ValueError(f"{show_value(cell)} is not an ISO 8601 datetime") from None
        aware = getattr(self.type_, "timezone", False) or isinstance(self.column.type, UTCDateTime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC) if aware else value
        value = value.astimezone(UTC)
        return value if aware else value.replace(tzinfo=None)

    def _read_date(self, cell: str) -> date:
        try:
            return date.fromisoformat(cell.strip())
        except ValueError:
            raise ValueError(f"{show_value(cell)} is not an ISO 8601 date") from None

    def _read_time(self, cell: str) -> time:
        try:
            return time.fromisoformat(cell.strip())
        except ValueError:
            raise ValueError(f"{show_value(cell)} is not an ISO 8601 time") from None

    def _read_interval(self, cell: str) -> timedelta:
        return timedelta(seconds=self._read_float(cell))

    def _read_uuid(self, cell: str) -> uuid.UUID | str:
        try:
            value = uuid.UUID(cell.strip())
        except ValueError:
            raise ValueError(f"{show_value(cell)} is not a UUID") from None
        return value if getattr(self.type_, "as_uuid", True) else str(value)

    def _read_json(self, cell: str) -> Any:
        try:
            return json.loads(cell)
        except ValueError as exc:
            raise ValueError(f"not valid JSON ({exc})") from None

    def _read_enum(self, cell: str) -> Any:
        type_ = cast(Enum, self.type_)
        enum_class = type_.enum_class
        if enum_class is not None:
            if cell in enum_class.__members__:
                return enum_class[cell]
            for member in enum_class:
                if str(member.value) == cell:
                    return member
        elif cell in type_.enums:
            return cell
        raise ValueError(f"{show_value(cell)} is not one of {', '.join(type_.enums)}")

    def _read_bytes(self, cell: str) -> bytes:
        try:
            return base64.b64decode(cell, validate=True)
        except ValueError:
            raise ValueError("not valid base64") from None


def show_value(cell: str) -> str:
    """A value as an error message quotes it: at most 40 characters."""
    return repr(cell if len(cell) <= 40 else cell[:37] + "...")
