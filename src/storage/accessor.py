"""``ModelAccessor``: typed, audited reads and writes of one SQLModel table."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import ColumnElement, Table, func, inspect, select
from sqlmodel import Session, SQLModel

from storage import changes
from storage import database as storage_database
from storage._bulk import BulkInserter
from storage._cascades import Dependant, audit_rows_of, dependants, register_component
from storage._listeners import Change, ChangeListener, is_watched, record, row_values
from storage._references import missing_parent
from storage._rows import SOFT_DELETE_COLUMN, RowShape, in_chunks
from storage._softdelete import (
    Cascade,
    check_moved,
    check_parents,
    refuse_taken_values,
    restore_children,
)
from storage.auditor import audit_row, utcnow, write_audit_rows
from storage.constraints import FOREIGN_KEY, BrokenConstraint
from storage.errors import (
    ConfigurationError,
    DatabaseBusyError,
    IntegrityConflictError,
    translate_driver_errors,
)
from storage.hooks import HookDecorators, HookRegistry
from storage.relations import children_of, parents_of

__all__ = ["ModelAccessor"]

ModelT = TypeVar("ModelT", bound=SQLModel)


class ModelAccessor(HookDecorators[ModelT]):
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

    # -- writes ----------------------------------------------------------------------------

    def insert(self, obj: ModelT, *, actor: str = "internal") -> ModelT:
        """Insert one row, audited, and return it with its primary key set."""
        with self._write([obj]) as session:
            self._insert_rows(session, [obj], actor)
        return obj

    def insert_many(self, objs: Sequence[ModelT], *, actor: str = "internal") -> list[ModelT]:
        """Insert rows in one transaction with bulk statements, each row audited."""
        rows = list(objs)
        if rows:
            with self._write(rows) as session:
                self._insert_rows(session, rows, actor)
        return rows

    def save(self, obj: ModelT, *, actor: str = "internal") -> ModelT:
        """Insert ``obj`` when its key is new (or unset), else update the stored row from it.

        Every column is copied, ``deleted_at`` included, as in vention-storage: saving a new
        instance over a soft-deleted row brings it back, saving one read with
        ``include_deleted=True`` keeps it deleted. Saving a row whose values did not change
        writes nothing.
        """
        key = getattr(obj, self.primary_key)
        # Taken before the write starts: opening a savepoint flushes the caller's edits.
        loaded_before = self._shape.committed_snapshot(obj) if inspect(obj).persistent else None
        with self._write([obj]) as session:
            stored = session.get(self.model, key) if key is not None else None
            if stored is None:
                self._insert_rows(session, [obj], actor)
                return obj
            if stored is obj and loaded_before is not None:
                before = loaded_before
            else:
                before = self._shape.committed_snapshot(stored)
            if stored is not obj:
                for name in self.columns:
                    if name != self.primary_key:
                        setattr(stored, name, getattr(obj, name))
            if self._shape.snapshot(stored) != before:
                check_moved(session, self._shape, stored, before)
                self._finish_update(session, stored, before, actor, "update")
            return stored

    def update(self, id: Any, /, *, actor: str = "internal", **fields: Any) -> ModelT | None:
        """Change some fields of a row; ``None`` when it is missing or soft-deleted.

        With no fields, or values equal to the stored ones, it returns the row and writes
        nothing: no hook runs, no audit row, no change event.

        Raises:
            ValueError: a field is unknown, the primary key or ``deleted_at``; nothing changed.
        """
        self._shape.check_updatable(fields)
        if not fields:
            return self.get(id)
        with self._write([fields]) as session:
            obj = session.get(self.model, self.coerce_key(id))
            if obj is None or self._shape.is_deleted(obj):
                return None
            before = self._shape.snapshot(obj)
            for name, value in fields.items():
                setattr(obj, name, value)
            if self._shape.snapshot(obj) != before:
                check_moved(session, self._shape, obj, before)
                self._finish_update(session, obj, before, actor, "update")
            return obj

    def delete(self, id: Any, *, actor: str = "internal") -> bool:
        """Soft-delete the row when the model has ``deleted_at``, else delete it.

        Returns ``False`` when the row is missing. A row that is already soft-deleted stays as
        it is (its ``deleted_at`` and audit trail unchanged) and counts as deleted: ``True``.
        A soft delete applies the policy of each relation referring to the table
        (:mod:`storage.relations`): live children are soft-deleted with it (``cascade``, each
        audited), or the delete is refused while there are some (``refuse``), or they stay.

        Raises:
            LiveChildrenError: a ``refuse`` relation has live children; nothing changed.
        """
        return self.delete_many([id], actor=actor) == 1

    def delete_many(self, ids: Sequence[Any], *, actor: str = "internal") -> int:
        """Delete rows in one transaction with bulk statements; returns how many of the
        distinct ``ids`` exist (already soft-deleted ones included, left as they are)."""
        keys = list(dict.fromkeys(self.coerce_key(id) for id in ids))
        if not keys:
            return 0
        statement = select(self.model)
        if self.soft_delete and any(r.policy != "leave" for r in children_of(self._table)):
            # Held until the commit: a child created meanwhile waits for it, then sees the
            # parent deleted (softdelete.check_parents reads parents FOR SHARE).
            statement = statement.with_for_update()
        with self._write() as session:
            found = [
                obj
                for chunk in in_chunks(keys)
                for obj in session.scalars(statement.where(self._pk_column.in_(chunk)))
            ]
            self._delete_rows(
                session, [obj for obj in found if not self._shape.is_deleted(obj)], actor
            )
            return len(found)

    def restore(self, id: Any, *, actor: str = "internal") -> bool:
        """Clear ``deleted_at``; ``True`` also when the row was not deleted, ``False`` if missing.

        Runs the update hooks and is audited as ``restore``. ``False`` for a model without
        ``deleted_at`` (nothing to restore), as in vention-storage. The children its soft
        delete took with it (relations with the ``cascade`` policy) come back too, each
        audited; children deleted on their own before stay deleted.

        Raises:
            DeletedParentError: the row (or a child coming back) refers to a deleted row.
            RestoreConflictError: a live row took a unique value of the row (or of a child)
                meanwhile; nothing changed.
        """
        if not self.soft_delete:
            return False
        with self._write() as session:
            obj = session.get(self.model, self.coerce_key(id))
            if obj is None:
                return False
            if self._shape.is_deleted(obj):
                row = self._shape.row(obj)
                moment = row[SOFT_DELETE_COLUMN]
                refuse_taken_values(session, self._table, [row], self.component)
                row[SOFT_DELETE_COLUMN] = None
                check_parents(session, self._table, [row])
                before = self._shape.snapshot(obj)
                setattr(obj, SOFT_DELETE_COLUMN, None)
                self._finish_update(session, obj, before, actor, "restore")
                restored = restore_children(session, self._table, [row], moment)
                self._audit_cascaded(session, actor, restored)
            return True

    def purge(self, id: Any, *, actor: str = "internal") -> bool:
        """Delete a soft-deleted row for good, audited as ``purge`` (with the rows the delete
        takes with it, see :mod:`storage._cascades`); no delete hooks run.

        Returns ``False`` when the row is missing, live (only deleted rows are purged), or
        the model has no ``deleted_at``.
        """
        return self.purge_deleted([id], actor=actor) == 1

    def purge_deleted(
        self,
        ids: Sequence[Any] | None = None,
        *,
        deleted_before: datetime | None = None,
        actor: str = "internal",
    ) -> int:
        """Purge soft-deleted rows: those of ``ids``, or every one, deleted before
        ``deleted_before`` when given (a retention limit); returns how many went."""
        if not self.soft_delete:
            return 0
        deleted_at = getattr(self.model, SOFT_DELETE_COLUMN)
        statement = select(self.model).where(deleted_at.is_not(None))
        if deleted_before is not None:
            statement = statement.where(deleted_at < deleted_before)
        with self._write() as session:
            if ids is None:
                found = list(session.scalars(statement))
            else:
                keys = list(dict.fromkeys(self.coerce_key(id) for id in ids))
                found = [
                    obj
                    for chunk in in_chunks(keys)
                    for obj in session.scalars(statement.where(self._pk_column.in_(chunk)))
                ]
            self._remove_rows(session, found, actor, "purge")
            return len(found)

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _write(self, written: Sequence[Any] = ()) -> Iterator[Session]:
        """The write's transaction (a savepoint inside a caller's); a broken foreign key that
        the database does not name is named after the values in ``written``."""
        try:
            with self._transaction() as session:
                yield session
        except IntegrityConflictError as exc:
            broken = exc.constraint
            if not written or broken is None or broken.kind != FOREIGN_KEY or broken.name:
                raise
            column = missing_parent(self.database, self._table, written)
            if column is None:
                raise
            named = BrokenConstraint(FOREIGN_KEY, column)
            error = IntegrityConflictError(str(named), exc.statement, exc.params, exc.orig)
            error.named = named
            raise error from exc

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        db = self.database
        current = db.current_session()
        if current is None:
            with db.transaction() as session:
                yield session
            return
        if current.info.get(storage_database.SAVEPOINTS_KEY) is False:
            with translate_driver_errors():
                yield current
            return
        # Inside a caller's transaction a savepoint keeps a failed write (a hook that raised)
        # from being committed with the rest if the caller catches the error and carries on.
        mark = changes.tally_mark(current)
        with translate_driver_errors():
            savepoint = current.begin_nested()
            try:
                yield current
            except BaseException:
                savepoint.rollback()
                changes.discard_tallies_since(current, mark)
                raise
            savepoint.commit()

    def _insert_rows(self, session: Session, objs: list[ModelT], actor: str) -> None:
        for obj in objs:
            self.hooks.emit("before_insert", session=session, instance=obj)
        if parents_of(self._table):
            check_parents(session, self._table, [self._shape.row(obj) for obj in objs])
        self._inserter.insert(session, objs)
        if self._inserter.uses_core and is_watched(self.table_name):
            # Written with Core statements, so the flush that records changes never saw them.
            record(session, [Change(self.table_name, "create", row_values(o)) for o in objs])
        afters = [self._shape.snapshot(obj) for obj in objs]
        self._audit(session, actor, "create", objs, [None] * len(objs), afters)
        self.hooks.emit_each("after_insert", session=session, instances=objs)

    def _finish_update(
        self, session: Session, obj: ModelT, before: dict[str, Any], actor: str, operation: str
    ) -> None:
        self.hooks.emit("before_update", session=session, instance=obj)
        session.flush()
        after = self._shape.snapshot(obj)
        self._audit(session, actor, operation, [obj], [before], [after])
        self.hooks.emit("after_update", session=session, instance=obj)

    def _delete_rows(self, session: Session, objs: list[ModelT], actor: str) -> None:
        self.hooks.emit_each("before_delete", session=session, instances=objs)
        if self.soft_delete:
            befores = [self._shape.snapshot(obj) for obj in objs]
            now = self._shape.deleted_at_now()
            cascade = None
            if objs and children_of(self._table):
                rows = [self._shape.row(obj) for obj in objs]
                cascade = Cascade(session, self._table, rows, [None] * len(rows))
                moment = cascade.moment(now)
                now = moment.replace(tzinfo=now.tzinfo)  # as the column wants it
            for obj in objs:
                setattr(obj, SOFT_DELETE_COLUMN, now)
            session.flush()
            afters: list[dict[str, Any] | None] = [self._shape.snapshot(obj) for obj in objs]
            cascaded = cascade.apply(now) if cascade is not None else []
            self._audit(session, actor, "soft_delete", objs, befores, afters, cascaded)
        else:
            self._remove_rows(session, objs, actor, "delete")
        self.hooks.emit_each("after_delete", session=session, instances=objs)

    def _remove_rows(
        self, session: Session, objs: list[ModelT], actor: str, operation: str
    ) -> None:
        """Delete ``objs`` for good, with the audit rows of what the delete takes with it."""
        befores = [self._shape.snapshot(obj) for obj in objs]
        keys = [getattr(obj, self.primary_key) for obj in objs]
        table = self.model.__table__  # type: ignore[attr-defined]
        cascaded = dependants(session, table, keys) if objs else []
        for obj in objs:
            session.delete(obj)
        session.flush()
        self._audit(session, actor, operation, objs, befores, [None] * len(objs), cascaded)

    def _audit(
        self,
        session: Session,
        actor: str,
        operation: str,
        objs: list[ModelT],
        befores: Sequence[dict[str, Any] | None],
        afters: Sequence[dict[str, Any] | None],
        cascaded: Sequence[Dependant] = (),
    ) -> None:
        changes.tally(session, "write", self.component, operation, len(objs))
        if not self.enable_auditing or not objs:
            return
        now = utcnow()
        rows = [
            audit_row(
                component=self.component,
                operation=operation,
                record_id=getattr(obj, self.primary_key),
                actor=actor,
                before=before,
                after=after,
                timestamp=now,
            )
            for obj, before, after in zip(objs, befores, afters, strict=True)
        ]
        # One write for the rows and what the delete took with them: one turn at the chain.
        rows.extend(audit_rows_of(cascaded, actor, now))
        write_audit_rows(session, rows)

    def _audit_cascaded(self, session: Session, actor: str, cascaded: list[Dependant]) -> None:
        if self.enable_auditing and cascaded:
            write_audit_rows(session, audit_rows_of(cascaded, actor, utcnow()))
