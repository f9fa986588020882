"""The audited writes of :class:`storage.accessor.ModelAccessor`.

Insert, save, update, delete, restore and purge, each in its own transaction or in a savepoint
of the caller's, with the hooks, the audit rows and the soft-delete cascades of each write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Column, Table, inspect, select
from sqlmodel import Session, SQLModel

from storage import changes
from storage import database as storage_database
from storage._bulk import BulkInserter
from storage._cascades import Dependant, audit_rows_of, dependants
from storage._listeners import Change, is_watched, record, row_values
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
from storage.errors import IntegrityConflictError, translate_driver_errors
from storage.hooks import HookDecorators
from storage.relations import children_of, parents_of

__all__ = ["AuditedWrites"]

ModelT = TypeVar("ModelT", bound=SQLModel)


class AuditedWrites(HookDecorators[ModelT]):
    """The write methods of :class:`~storage.accessor.ModelAccessor`, over the attributes its
    constructor sets."""

    model: type[ModelT]
    component: str
    enable_auditing: bool
    primary_key: str
    columns: tuple[str, ...]
    soft_delete: bool
    table_name: str
    coerce_key: Callable[[Any], Any]
    _shape: RowShape
    _table: Table
    _pk_column: Column[Any]
    _inserter: BulkInserter

    if TYPE_CHECKING:  # ModelAccessor defines them

        @property
        def database(self) -> storage_database.Database: ...

        def get(self, id: Any, *, include_deleted: bool = False) -> ModelT | None: ...

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
