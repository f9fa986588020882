"""``ModelAccessor``: typed, audited reads and writes of one SQLModel table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import ColumnElement, Table, func, select
from sqlmodel import SQLModel

from storage import changes
from storage import database as storage_database
from storage._bulk import BulkInserter
from storage._cascades import register_component
from storage._listeners import ChangeListener
from storage._rows import RowShape
from storage._writes import AuditedWrites
from storage.errors import ConfigurationError, DatabaseBusyError
from storage.hooks import HookRegistry
from storage.relations import children_of, parents_of

__all__ = ["ModelAccessor"]

ModelT = TypeVar("ModelT", bound=SQLModel)


class ModelAccessor(AuditedWrites[ModelT]):
    """Reads and audited writes of one table model.

    Args:
        model: a SQLModel class declared with ``table=True`` and a single-column primary key.
        component_name: the name used in routes and in the audit log (e.g. ``"users"``).
        enable_auditing: write an :class:`~storage.auditor.AuditLog` row for every write.
        database: the :class:`~storage.database.Database` the table lives in; ``None`` (the
            default) follows :func:`storage.database.get_database` at each call, until
            :meth:`bind` (``bootstrap(database=...)`` binds the accessors it mounts).

    Raises:
        TypeError: ``model`` is not a table model.
        ValueError: the primary key has more than one column.
    """

    def __init__(
        self,
        model: type[ModelT],
        component_name: str,
        *,
        enable_auditing: bool = True,
        database: storage_database.Database | None = None,
    ) -> None:
        shape = RowShape(model)
        self._database = database
        self.model = model
        self.component = component_name
        self.enable_auditing = enable_auditing
        self.hooks: HookRegistry[ModelT] = HookRegistry()
        self.primary_key = shape.primary_key
        self.columns = shape.columns
        self.soft_delete = shape.soft_delete
        self.table_name = shape.table_name
        self.coerce_key = shape.coerce_key
        self._shape = shape
        self._table: Table = model.__table__  # type: ignore[attr-defined]
        children_of(self._table)  # a relation with a policy that cannot be: a ValueError now
        parents_of(self._table)
        self._pk_column = shape.pk_column
        self._inserter = BulkInserter(shape.mapper)
        register_component(self.table_name, component_name)

    def __repr__(self) -> str:
        return f"ModelAccessor({self.model.__name__}, {self.component!r})"

    @property
    def database(self) -> storage_database.Database:
        """The database this accessor reads and writes: the one it was given or bound to, else
        the default one at the time of the call."""
        return self._database or storage_database.get_database()

    @property
    def bound_database(self) -> storage_database.Database | None:
        """The database given or bound; ``None`` while the accessor follows the default."""
        return self._database

    def bind(self, database: storage_database.Database) -> None:
        """Read and write ``database`` from now on (``bootstrap(database=...)`` calls it).

        Raises:
            ConfigurationError: the accessor already belongs to another database.
        """
        if self._database is not None and self._database is not database:
            raise ConfigurationError(
                f"{self!r} already uses {self._database!r}; it cannot also use {database!r}"
            )
        self._database = database

    @property
    def where(self) -> type[ModelT]:
        """The model class, so conditions read ``acc.where.email == "a@b.c"``."""
        return self.model

    # -- hooks and listeners ---------------------------------------------------------------

    def after_commit(self) -> Callable[[ChangeListener], ChangeListener]:
        """Decorator: ``fn(changes)`` runs once per committed transaction that wrote this table.

        Every ORM write to the table counts, through this accessor or not. It runs after the
        commit, outside any transaction, and never after a rollback. An exception it raises is
        logged and does not affect the committed data. One function decorated by several
        accessors is called once per transaction, with the changes to all their tables. It is
        kept as long as the accessor (see :func:`storage.changes.add_commit_listener`).
        """

        def register(fn: ChangeListener) -> ChangeListener:
            changes.add_commit_listener(self.table_name, fn, owner=self)
            return fn

        return register

    def snapshot(self, obj: ModelT) -> dict[str, Any]:
        """The row's column values, JSON-safe, as the audit log and entity tags see them."""
        return self._shape.snapshot(obj)

    # -- reads -----------------------------------------------------------------------------

    def get(self, id: Any, *, include_deleted: bool = False) -> ModelT | None:
        """The row with primary key ``id``, or ``None`` (also when soft-deleted)."""
        key = self.coerce_key(id)
        with self.database.read_session() as session:
            obj = session.get(self.model, key)
            if obj is None or (not include_deleted and self._shape.is_deleted(obj)):
                return None
            return obj

    async def get_async(self, id: Any, *, include_deleted: bool = False) -> ModelT | None:
        """:meth:`get` for async code: never blocks the event loop for longer than a read by key.

        On a SQLite file the row is read at once in the calling thread unless a lock is in the
        way (:meth:`storage.database.Database.read_now`); otherwise (and the first time, and
        inside a transaction, and on other databases) in a worker thread. The instance
        returned belongs to no session.
        """
        parameters = {"key": self.coerce_key(id)}
        db = self.database
        row: dict[str, Any] | None
        if db.reads_now and db.current_session() is None:
            try:
                row = db.read_now(self._shape.read_by_key, parameters)
                return self._shape.instance(row, include_deleted=include_deleted)
            except DatabaseBusyError:
                pass  # wait for the lock in a worker thread instead
        row = await anyio.to_thread.run_sync(self._read_by_key, parameters)
        return self._shape.instance(row, include_deleted=include_deleted)

    def _read_by_key(self, parameters: dict[str, Any]) -> dict[str, Any] | None:
        with self.database.read_session() as session:
            row = session.execute(self._shape.select_by_key, parameters).mappings().first()
        self.database.prepare_read_now()  # here, where waiting for a lock is harmless
        return dict(row) if row is not None else None

    def all(
        self,
        *,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int = 0,
        order_by: str | None = None,
        order_desc: bool = False,
    ) -> list[ModelT]:
        """Every row (soft-deleted ones hidden), optionally paged and ordered by a column.

        Raises:
            ValueError: ``order_by`` is not a column of the model.
        """
        return self.find(
            include_deleted=include_deleted,
            limit=limit,
            offset=offset,
            order_by=order_by,
            order_desc=order_desc,
        )

    def find(
        self,
        *conditions: ColumnElement[bool] | bool,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int = 0,
        order_by: str | None = None,
        order_desc: bool = False,
    ) -> list[ModelT]:
        """Rows matching every condition (SQLAlchemy expressions, ANDed).

        Raises:
            ValueError: ``order_by`` is not a column of the model.
        """
        return self.find_ordered(
            *conditions,
            order=self._shape.order(order_by, order_desc),
            include_deleted=include_deleted,
            limit=limit,
            offset=offset,
        )

    def find_ordered(
        self,
        *conditions: ColumnElement[bool] | bool,
        order: Sequence[ColumnElement[Any]],
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelT]:
        """Rows matching every condition, in an explicit SQL order (several keys, NULL placement).

        The caller's ``order`` should end with a unique column so that pages never overlap.
        """
        filters = self._shape.filters(conditions, include_deleted)
        statement = select(self.model).where(*filters).order_by(*order)
        if offset:
            statement = statement.offset(offset)
        if limit is not None:
            statement = statement.limit(limit)
        with self.database.read_session() as session:
            return list(session.scalars(statement).all())

    def get_for_update(self, id: Any, *, include_deleted: bool = False) -> ModelT | None:
        """Like :meth:`get`, but the row stays locked against other writers until the current
        transaction ends (``SELECT ... FOR UPDATE``; SQLite serializes writers instead).

        Call it inside :func:`storage.database.transaction`, before changing the row, so that a
        check made on the row (a version, a state) still holds when the write happens.
        """
        key = self.coerce_key(id)
        with self.database.read_session() as session:
            obj = session.get(self.model, key, with_for_update=True, populate_existing=True)
            if obj is None or (not include_deleted and self._shape.is_deleted(obj)):
                return None
            return obj

    def count(self, *conditions: ColumnElement[bool] | bool, include_deleted: bool = False) -> int:
        """The number of rows matching every condition, counted by the database."""
        statement = (
            select(func.count())
            .select_from(self.model)
            .where(*self._shape.filters(conditions, include_deleted))
        )
        with self.database.read_session() as session:
            return int(session.scalar(statement) or 0)
