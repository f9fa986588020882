"""Which constraint a driver error says a write broke, by the error's code, and its name.

The kind comes from the code each driver sets (sqlite3's extended ``sqlite_errorcode``,
psycopg's ``sqlstate``, PyMySQL's ``errno``); the name of the constraint or column comes from
the driver's diagnostics (psycopg) or from the part of the message that names it, never from
the values or the SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["BrokenConstraint", "CHECK", "FOREIGN_KEY", "NOT_NULL", "UNIQUE"]

UNIQUE = "unique"
FOREIGN_KEY = "foreign key"
NOT_NULL = "not null"
CHECK = "check"

_SQLITE_KINDS = {
    2067: UNIQUE,  # SQLITE_CONSTRAINT_UNIQUE
    1555: UNIQUE,  # SQLITE_CONSTRAINT_PRIMARYKEY
    787: FOREIGN_KEY,  # SQLITE_CONSTRAINT_FOREIGNKEY
    1299: NOT_NULL,  # SQLITE_CONSTRAINT_NOTNULL
    275: CHECK,  # SQLITE_CONSTRAINT_CHECK
}
_POSTGRES_KINDS = {"23505": UNIQUE, "23503": FOREIGN_KEY, "23502": NOT_NULL, "23514": CHECK}
_MYSQL_KINDS = {
    1062: UNIQUE,  # ER_DUP_ENTRY
    1586: UNIQUE,  # ER_DUP_ENTRY_WITH_KEY_NAME
    1451: FOREIGN_KEY,  # ER_ROW_IS_REFERENCED_2: a parent still has children
    1452: FOREIGN_KEY,  # ER_NO_REFERENCED_ROW_2: no such parent
    1216: FOREIGN_KEY,  # ER_NO_REFERENCED_ROW
    1217: FOREIGN_KEY,  # ER_ROW_IS_REFERENCED
    1048: NOT_NULL,  # ER_BAD_NULL_ERROR
    1364: NOT_NULL,  # ER_NO_DEFAULT_FOR_FIELD
    4025: CHECK,  # MariaDB ER_CONSTRAINT_FAILED
    3819: CHECK,  # MySQL ER_CHECK_CONSTRAINT_VIOLATED
}

# What names the constraint or column in each driver's message (the values are never taken).
_SQLITE_NAME = re.compile(r"constraint failed: (?P<name>[\w.]+(?:, [\w.]+)*)")
_MYSQL_NAMES = (
    # FOREIGN KEY: "... fails (`db`.`gadget`, CONSTRAINT `fk` FOREIGN KEY (`owner_id`) ..."
    re.compile(r"`(?P<table>[^`]+)`, CONSTRAINT `[^`]+` FOREIGN KEY \((?P<columns>[^)]+)\)"),
    re.compile(r"for key '(?P<name>[^']+)'"),  # unique
    re.compile(r"Column '(?P<name>[^']+)' cannot be null"),
    re.compile(r"Field '(?P<name>[^']+)' doesn't have a default value"),
    re.compile(r"CONSTRAINT `(?P<name>[^`]+)` failed"),  # MariaDB check
    re.compile(r"Check constraint '(?P<name>[^']+)' is violated"),  # MySQL check
)


@dataclass(frozen=True)
class BrokenConstraint:
    """A constraint a write broke: its ``kind`` (``unique``, ``foreign key``, ``not null``,
    ``check``) and ``name``, the constraint or column(s) it concerns, when the database says."""

    kind: str
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} constraint violated" + (f" ({self.name})" if self.name else "")


def broken_constraint(error: BaseException | None) -> BrokenConstraint | None:
    """The constraint a driver error reports as broken, by its code; ``None`` when the error
    is no constraint violation (or carries no code)."""
    if error is None:
        return None
    sqlite_code = getattr(error, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return _sqlite(sqlite_code, str(error))
    args: tuple[Any, ...] = getattr(error, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL: (errno, message); it sets sqlstate too
        return _mysql(args[0], str(args[1]) if len(args) > 1 else "")
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate is not None:
        return _postgres(sqlstate, getattr(error, "diag", None))
    return None


def _sqlite(code: int, message: str) -> BrokenConstraint | None:
    kind = _SQLITE_KINDS.get(code)
    if kind is None:
        return None
    found = _SQLITE_NAME.search(message)
    return BrokenConstraint(kind, found["name"] if found else None)


def _postgres(sqlstate: str, diag: Any) -> BrokenConstraint | None:
    kind = _POSTGRES_KINDS.get(sqlstate)
    if kind is None:
        return None
    table, column = getattr(diag, "table_name", None), getattr(diag, "column_name", None)
    if kind == NOT_NULL and column:
        return BrokenConstraint(kind, f"{table}.{column}" if table else column)
    return BrokenConstraint(kind, getattr(diag, "constraint_name", None))


def _mysql(code: int, message: str) -> BrokenConstraint | None:
    kind = _MYSQL_KINDS.get(code)
    if kind is None:
        return None
    for pattern in _MYSQL_NAMES:
        found = pattern.search(message)
        if found is None:
            continue
        names = found.groupdict()
        if names.get("columns"):
            columns = [column.strip(" `") for column in names["columns"].split(",")]
            return BrokenConstraint(kind, ", ".join(f"{names['table']}.{c}" for c in columns))
        return BrokenConstraint(kind, names["name"])
    return BrokenConstraint(kind)
