"""Fast inserts: rows written with Core ``executemany`` and handed back as ORM instances.

The ORM unit of work needs the database to return each new primary key in order. SQLite has
no way to guarantee that order for a multi-row ``INSERT ... RETURNING``, so SQLAlchemy falls
back to one statement per row, which makes audited batch inserts several times slower than the
SQL itself. This module inserts a batch with one ``executemany`` instead and derives the keys:

- keys given by the caller (strings, UUIDs, explicit integers) need no round trip;
- on SQLite an integer key is an alias of the ``rowid``; inside our write transaction (``BEGIN
  IMMEDIATE``, so no other writer) new rowids are consecutive, ending at ``last_insert_rowid()``;
- elsewhere ``INSERT ... RETURNING`` with ``sort_by_parameter_order`` (PostgreSQL and MariaDB
  keep the order through an implicit sentinel).

The instances are then attached to the session as if loaded, so hooks and later reads behave as
after an ORM flush. Models with relationships or server-side defaults keep the ORM path, which
cascades and fetches those values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Integer, Table, insert
from sqlalchemy.orm import Mapper, make_transient_to_detached
from sqlmodel import Session

__all__ = ["BulkInserter"]


class BulkInserter:
    """Inserts instances of one mapped model with Core statements when that is safe."""

    def __init__(self, mapper: Mapper[Any]) -> None:
        self._table: Table = mapper.local_table  # type: ignore[assignment]
        self._pk: Column[Any] = mapper.primary_key[0]  # type: ignore[assignment]
        self._pk_key = mapper.get_property_by_column(self._pk).key
        self._fields = [(mapper.get_property_by_column(c).key, c) for c in self._table.columns]
        self._enabled = (
            not mapper.relationships
            and mapper.inherits is None
            and all(c.server_default is None for c in self._table.columns if c is not self._pk)
        )
        self._with_defaults = {c.key for c in self._table.columns if c.default is not None}
        self._rowid_key = type(self._pk.type) is Integer
        # Built once: a statement object keeps its cache key, so reuse skips regenerating it.
        self._insert = insert(self._table)
        self._insert_returning = self._insert.returning(self._pk, sort_by_parameter_order=True)

    @property
    def uses_core(self) -> bool:
        """Whether rows are inserted with Core statements (else with an ORM flush)."""
        return self._enabled

    def insert(self, session: Session, objs: Sequence[Any]) -> None:
        """Insert ``objs`` and leave them persistent in ``session`` with their keys set."""
        if not self._enabled:
            session.add_all(objs)
            session.flush()
            return
        connection = session.connection()
        for group in self._groups(objs):
            params = [self._params(obj, group[0]) for obj in group[1]]
            self._execute(session, connection, group[1], params, generated=group[0][0])

    def _groups(self, objs: Sequence[Any]) -> list[tuple[tuple[bool, frozenset[str]], list[Any]]]:
        # executemany needs one set of keys; a None for a column with a Python-side default
        # (or an unset key) leaves the column out so the default applies, as the ORM does.
        groups: dict[tuple[bool, frozenset[str]], list[Any]] = {}
        for obj in objs:
            generated = getattr(obj, self._pk_key) is None
            skipped = frozenset(
                column.key
                for key, column in self._fields
                if column.key in self._with_defaults and getattr(obj, key) is None
            )
            groups.setdefault((generated, skipped), []).append(obj)
        return list(groups.items())

    def _params(self, obj: Any, signature: tuple[bool, frozenset[str]]) -> dict[str, Any]:
        generated, skipped = signature
        # A new instance keeps every value in its __dict__; reading it there skips the
        # instrumented descriptor, the largest per-row cost of a batch.
        values = obj.__dict__
        return {
            column.key: values[key] if key in values else getattr(obj, key)
            for key, column in self._fields
            if column.key not in skipped and not (generated and column is self._pk)
        }

    def _execute(
        self,
        session: Session,
        connection: Any,
        objs: list[Any],
        params: list[dict[str, Any]],
        *,
        generated: bool,
    ) -> None:
        statement = self._insert
        if not generated:
            connection.execute(statement, params)
        elif len(params) == 1:
            result = connection.execute(statement, params[0])
            self._set_keys(objs, [result.inserted_primary_key[0]])
        elif connection.dialect.name == "sqlite" and self._rowid_key:
            connection.execute(statement, params)
            last = connection.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
            self._set_keys(objs, range(last - len(objs) + 1, last + 1))
        else:
            keys = connection.execute(self._insert_returning, params).scalars().all()
            self._set_keys(objs, keys)
        for obj in objs:
            make_transient_to_detached(obj)
        session.add_all(objs)

    def _set_keys(self, objs: list[Any], keys: Sequence[Any]) -> None:
        # Written straight into the instance dict: make_transient_to_detached() resets the
        # attribute history right after, so there is nothing for the descriptor to record.
        for obj, key in zip(objs, keys, strict=True):
            obj.__dict__[self._pk_key] = key
