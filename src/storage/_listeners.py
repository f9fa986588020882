"""After-commit listeners: each committed transaction's writes, told to the functions that asked.

Import these names from :mod:`storage.changes`, their public home (as in vention-storage)::

    @accessor.after_commit() ──> add_commit_listener(table, fn, owner=accessor)
                                 (the first listener turns on the session events below)

    flush ── after_flush ──> one Change per written row of a watched table, kept with the
                             innermost transaction (a savepoint, or the outer one)
    (accessor rows inserted with Core statements never flush: the accessor records them)
                                        │
    savepoint ends ── released: its changes move to the enclosing transaction
                      rolled back: its changes are dropped
    outer transaction ends ── committed: the changes are dispatched, each listener called once
                                         with the changes to its tables (after the block of
                                         ``transaction()``, ``use_session()`` or
                                         ``held_until_exit()``, which hold them until then)
                              otherwise: dropped

Changes are recorded from SQLAlchemy's unit of work, so every ORM write to a watched table is
reported: accessor writes (audited or not), rows a relationship cascade deletes, plain
``Session`` writes. Raw SQL, imports and restores are not (see :mod:`storage.changes`).
"""

from __future__ import annotations

import copy
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, SessionTransaction

__all__ = [
    "Change",
    "ChangeListener",
    "ChangeOperation",
    "CommitListener",
    "add_commit_listener",
    "call_listeners",
    "held_until_exit",
    "is_watched",
    "record",
    "remove_commit_listener",
    "row_values",
]

logger = logging.getLogger("storage.changes")

ChangeOperation = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class Change:
    """One row written by a committed transaction.

    Attributes:
        table: name of the table that was written.
        operation: ``create``, ``update`` or ``delete``, as in the audit log; a soft delete is
            the ``update`` that sets ``deleted_at``, a restore the one that clears it.
        values: the row's column values after the write (for a delete: the deleted row), as
            Python values (datetimes, UUIDs, ...), copied: safe to keep.
        before: the values before an update; ``None`` for creates and deletes.
    """

    table: str
    operation: ChangeOperation
    values: dict[str, Any]
    before: dict[str, Any] | None = None


ChangeListener = Callable[[list[Change]], None]
CommitListener = ChangeListener  # vention-storage's name

# Keys in Session.info.
_PENDING = "storage.pending_changes"  # {transaction: [Change]}: not committed yet
_COMMITTED = "storage.committed_transactions"  # {transaction}: committed, not ended yet
_HELD = "storage.held_changes"  # [[Change] per committed transaction], see held_until_exit


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_table: dict[str, list[ChangeListener]] = {}
        # An accessor's listeners live as long as the accessor (tests make many).
        self.owned: dict[str, weakref.WeakKeyDictionary[Any, list[ChangeListener]]] = {}
        self.tables: set[str] = set()  # every table ever watched: a cheap first check
        self.recording = False

    def listeners(self, table: str) -> list[ChangeListener]:
        with self.lock:
            found = list(self.by_table.get(table, ()))
            for listeners in list(self.owned.get(table, {}).values()):
                found.extend(listeners)
        return list(dict.fromkeys(found))


_registry = _Registry()


def add_commit_listener(table: str, listener: ChangeListener, *, owner: Any = None) -> None:
    """Call ``listener(changes)`` after every committed transaction that wrote to ``table``.

    A listener registered for several tables is still called once per transaction, with the
    changes to all of them. ``@accessor.after_commit()`` calls this with the accessor's table.

    Args:
        table: the table's name, as in ``Model.__tablename__``.
        listener: called with the transaction's changes to its tables, after the commit,
            outside any transaction; an exception it raises is logged and swallowed.
        owner: keep the listener only as long as this object lives (an accessor); ``None``
            keeps it for the life of the process.
    """
    with _registry.lock:
        if owner is None:
            listeners = _registry.by_table.setdefault(table, [])
        else:
            owners = _registry.owned.setdefault(table, weakref.WeakKeyDictionary())
            listeners = owners.setdefault(owner, [])
        if listener not in listeners:
            listeners.append(listener)
        _registry.tables.add(table)
        if not _registry.recording:
            event.listen(Session, "after_flush", _record_flush)
            _registry.recording = True


def remove_commit_listener(table: str, listener: ChangeListener) -> None:
    """Stop calling ``listener`` for ``table`` (registered with :func:`add_commit_listener`
    without an owner); one that is not registered is ignored."""
    with _registry.lock:
        listeners = _registry.by_table.get(table, [])
        if listener in listeners:
            listeners.remove(listener)


def is_watched(table: str) -> bool:
    """Whether any after-commit listener wants the writes to ``table``."""
    return table in _registry.tables and bool(_registry.listeners(table))


def row_values(instance: Any, *, loaded_only: bool = False) -> dict[str, Any]:
    """A copy of an instance's column values (only those in memory with ``loaded_only``)."""
    state = inspect(instance)
    values: dict[str, Any] = {}
    for attribute in state.mapper.column_attrs:
        if attribute.key in state.dict:
            values[attribute.key] = copy.deepcopy(state.dict[attribute.key])
        elif not loaded_only:
            values[attribute.key] = copy.deepcopy(getattr(instance, attribute.key))
    return values


def record(session: Session, changes: Iterable[Change]) -> None:
    """Keep changes written in ``session``'s current (innermost) transaction for dispatch."""
    pending: dict[SessionTransaction | None, list[Change]] = session.info.setdefault(_PENDING, {})
    pending.setdefault(_innermost(session), []).extend(changes)


@contextmanager
def held_until_exit(session: Session) -> Iterator[None]:
    """Hold the listeners' calls for transactions ``session`` commits until the block exits.

    ``database.transaction()`` and ``use_session()`` do this, so that a listener runs once the
    session is no longer current and may read and write through accessors. Nested blocks on
    one session leave the calls to the outermost. Each committed transaction is still told on
    its own, also when the block raised after it committed.
    """
    if _HELD in session.info:
        yield
        return
    session.info[_HELD] = []
    try:
        yield
    finally:
        for changes in session.info.pop(_HELD):
            dispatch(changes)


def dispatch(changes: list[Change]) -> None:
    """Call each listener of the changed tables once, with the changes to its tables."""
    calls: dict[ChangeListener, list[Change]] = {}
    for change in changes:
        for listener in _registry.listeners(change.table):
            calls.setdefault(listener, []).append(change)
    for listener, batch in calls.items():
        call_listeners([listener], batch)


def call_listeners(listeners: list[Callable[..., None]], *args: Any) -> None:
    """Call every listener; one that raises is logged and does not stop the others."""
    for listener in listeners:
        try:
            listener(*args)
        except Exception:
            logger.exception("listener %r failed", listener)


def _innermost(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def _record_flush(session: Session, _flush_context: Any) -> None:
    # After the flush, before the commit: new, dirty and deleted still describe what was
    # written, and each attribute's history still holds its old value.
    found: list[Change] = []
    for operation, instances in (
        ("create", session.new),
        ("update", session.dirty),
        ("delete", session.deleted),
    ):
        for instance in instances:
            table = str(inspect(instance).mapper.local_table.name)
            if not is_watched(table):
                continue
            try:
                change = _describe(session, instance, table, operation)
            except Exception:  # an observer never breaks the write it observes
                logger.exception("could not record a %s of a %s row", operation, table)
                continue
            if change is not None:
                found.append(change)
    if found:
        record(session, found)


def _describe(session: Session, instance: Any, table: str, operation: str) -> Change | None:
    if operation == "create":
        return Change(table, "create", row_values(instance))
    if operation == "delete":
        return Change(table, "delete", row_values(instance, loaded_only=True))
    if not session.is_modified(instance, include_collections=False):
        return None  # touched, but every value is the same
    state = inspect(instance)
    before = {}
    for attribute in state.mapper.column_attrs:
        history = state.attrs[attribute.key].history
        old = history.deleted[0] if history.deleted else getattr(instance, attribute.key)
        before[attribute.key] = copy.deepcopy(old)
    return Change(table, "update", row_values(instance), before)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    # Also fired when a savepoint is released, which the outer transaction may still roll
    # back: only mark it, the decision is made when the transaction ends.
    if _PENDING not in session.info:
        return  # nothing recorded in this session: an app without listeners pays nothing
    session.info.setdefault(_COMMITTED, set()).add(_innermost(session))


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if _PENDING not in session.info:
        return
    committed: set[SessionTransaction | None] = session.info.get(_COMMITTED, set())
    was_committed = transaction in committed
    committed.discard(transaction)
    changes = session.info.get(_PENDING, {}).pop(transaction, [])
    if not was_committed or not changes:
        return
    if transaction.parent is not None:
        session.info[_PENDING].setdefault(transaction.parent, []).extend(changes)
    elif _HELD in session.info:
        session.info[_HELD].append(changes)
    else:
        dispatch(changes)
