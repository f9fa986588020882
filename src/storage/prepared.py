"""``PreparedRead``: a SELECT compiled once and run straight on a SQLite driver connection.

For the hottest read, a record by key (``GET /{component}/{id}``): SQLite answers it in a few
microseconds, while ``Connection.execute`` spends several times that on its statement cache,
events and result objects. The statement is still compiled by SQLAlchemy, and every value
still goes through the column types' own bind and result processors, so the values are the
ones a session would load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Dialect, Select

__all__ = ["PreparedRead"]

_Processor = Callable[[Any], Any] | None


class PreparedRead:
    """A SELECT of columns with named bound parameters, compiled per dialect on first use.

    Raises:
        ValueError: (on first run) the statement needs SQLAlchemy to expand it at run time,
            such as ``IN`` with a list.
    """

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def first(
        self, driver_connection: Any, dialect: Dialect, parameters: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The first row as ``{label: value}``, or ``None``; driver errors pass through."""
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = _Compiled(self.statement, dialect)
        return compiled.first(driver_connection, parameters)


class _Compiled:
    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None or "POSTCOMPILE" in compiled.string:
            raise ValueError("only statements with plain positional parameters can be prepared")
        self.sql = compiled.string
        binds = [compiled.binds[name] for name in compiled.positiontup]
        # (name, the value bound in the statement, the type's processor)
        self.binds: list[tuple[str, Any, _Processor]] = [
            (bind.key, bind.value, bind.type.dialect_impl(dialect).bind_processor(dialect))
            for bind in binds
        ]
        self.columns: list[tuple[str, _Processor]] = [
            (str(column.key), column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in statement.selected_columns
        ]

    def first(self, driver_connection: Any, parameters: dict[str, Any]) -> dict[str, Any] | None:
        values = []
        for name, bound, process in self.binds:
            value = parameters.get(name, bound)
            values.append(process(value) if process else value)
        cursor = driver_connection.execute(self.sql, values)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None:
            return None
        return {
            name: process(value) if process else value
            for (name, process), value in zip(self.columns, row, strict=True)
        }
