"""Change feed: what a committed transaction wrote, and who wants to know.

In-process after-commit listeners (``@accessor.after_commit()``, :func:`add_commit_listener`)
are called once per committed transaction with a :class:`Change` per row it wrote to their
tables, after the commit and outside any transaction, so they may open transactions of their
own (see :mod:`storage._listeners`, whose public names this module exports, as vention-storage's
``storage.changes`` does).

Those listeners see only their own process. :func:`subscribe` follows the audit log instead:
every audited write of every process, in commit order, resumable (see :mod:`storage.feed`). A
transaction that wrote audit rows announces its commit to the readers of that log: on
PostgreSQL with ``NOTIFY`` on :data:`CHANNEL`, in the same process by waking them directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from storage._listeners import (
    Change,
    ChangeListener,
    ChangeOperation,
    CommitListener,
    add_commit_listener,
    call_listeners,
    held_until_exit,
    remove_commit_listener,
)

if TYPE_CHECKING:
    from storage.database import Database

__all__ = [
    "Change",
    "ChangeEvent",
    "ChangeListener",
    "ChangeOperation",
    "CommitListener",
    "RestoreListener",
    "add_commit_listener",
    "held_until_exit",
    "notify_database_restored",
    "off_database_restored",
    "on_database_restored",
    "remove_commit_listener",
    "subscribe",
]

logger = logging.getLogger("storage.changes")

_AUDITED = "storage.audited"
_TALLY = "storage.tally"

RESET = "reset"
"""The operation of the event that says the audit log was replaced (a restore)."""

CHANNEL = "machine_storage_changes"
"""The PostgreSQL ``NOTIFY`` channel of committed audit rows (the payload is empty)."""
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")


@dataclass(frozen=True)
class ChangeEvent:
    """One committed write: a row of the audit log.

    Attributes:
        id: the audit row's id; pass the last one seen as ``after`` to resume.
        component, record_id, operation, actor, timestamp, before, after: as in the audit log.
            ``operation`` is ``"reset"`` for the event that follows a restore.
    """

    id: int
    component: str
    record_id: str
    operation: str
    actor: str
    timestamp: datetime
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    json: str = field(default="", repr=False, compare=False)
    """The event as a JSON object (everything but ``id``), for the SSE ``data`` line."""
    sse: bytes = field(default=b"", repr=False, compare=False)
    """The event as a Server-Sent Events message (``event``, ``data``, ``id``): encoded once,
    sent to every client as it is."""

    @classmethod
    def from_row(cls, row: Any) -> ChangeEvent:
        """The event of an audit-log row."""
        return cls.of(
            id=int(row.id),
            component=row.component,
            record_id=str(row.record_id),
            operation=row.operation,
            actor=row.actor,
            timestamp=row.timestamp,
            before=row.before,
            after=row.after,
        )

    @classmethod
    def of(cls, **values: Any) -> ChangeEvent:
        """An event with its ``json`` and ``sse`` filled in."""
        event = cls(**values)
        data = {
            "component": event.component,
            "record_id": event.record_id,
            "operation": event.operation,
            "actor": event.actor,
            "timestamp": event.timestamp.isoformat(),
            "before": event.before,
            "after": event.after,
        }
        encoded = json.dumps(data, separators=(",", ":"))  # ASCII, one line
        name = " ".join(event.operation.split())  # an SSE field is one line
        object.__setattr__(event, "json", encoded)
        object.__setattr__(
            event, "sse", f"event: {name}\ndata: {encoded}\nid: {event.id}\n\n".encode()
        )
        return event


RestoreListener = Callable[[], None]


def tally_mark(session: Session) -> int:
    """A mark to :func:`discard_tallies_since` if the writes after it are rolled back."""
    return len(session.info.get(_TALLY, ()))


def discard_tallies_since(session: Session, mark: int) -> None:
    """Forget the rows tallied after ``mark`` (their savepoint was rolled back)."""
    tallies = session.info.get(_TALLY)
    if tallies is not None:
        del tallies[mark:]


class _RestoreListeners:
    def __init__(self) -> None:
        self.listeners: list[RestoreListener] = []


_restore_listeners = _RestoreListeners()


def on_database_restored(fn: RestoreListener) -> RestoreListener:
    """Register ``fn()`` to be called after a backup has been restored into the live database.

    Use it to drop caches that hold rows read before the restore.
    """
    _restore_listeners.listeners.append(fn)
    return fn


def off_database_restored(fn: RestoreListener) -> None:
    """Stop calling ``fn`` after restores (registered with :func:`on_database_restored`); a
    function that is not registered is ignored."""
    try:
        _restore_listeners.listeners.remove(fn)
    except ValueError:
        pass


def notify_database_restored() -> None:
    """Call every function registered with :func:`on_database_restored`."""
    call_listeners(list(_restore_listeners.listeners))


def subscribe(
    *,
    after: int | None = None,
    components: Iterable[str] = (),
    operations: Iterable[str] = (),
    follow: bool = True,
    database: Database | None = None,
) -> AsyncIterator[ChangeEvent]:
    """The committed writes of every process, as they commit: one event per audit row.

    An async iterator of :class:`ChangeEvent`, in commit order, each once. Pass
    the ``id`` of the last event seen as ``after`` to carry on where it left off (also after a
    restart: the events are the rows of the audit log). Models with ``enable_auditing=False``
    write no audit rows and are not in it.

    Args:
        after: start after this audit id; ``None``: with the next write.
        components: only these components (all when empty).
        operations: only these operations (all when empty).
        follow: keep waiting for new writes; ``False`` ends once it has caught up.
        database: the database to follow; default :func:`storage.database.get_database`.
    """
    from storage.feed import get_feed  # the feed needs the database, which needs this module

    return get_feed(database).subscribe(
        after=after, components=components, operations=operations, follow=follow
    )


def mark_audited(session: Session) -> None:
    """Note that ``session``'s transaction wrote audit rows: its commit is announced."""
    session.info[_AUDITED] = True


Tally = tuple[str, str, str, int]
"""What a transaction wrote: ``(kind, component, operation, rows)``; kind ``"write"`` (rows an
accessor wrote) or ``"audit"`` (audit rows)."""


class _Counters:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[list[Tally]], None]] = []


_counters = _Counters()


def on_committed_tally(fn: Callable[[list[Tally]], None]) -> None:
    """Call ``fn(tallies)`` (quickly, without raising) after each commit in this process that
    wrote rows, with what it wrote (see :data:`Tally`); for metrics. Until a function is
    registered, writes tally nothing."""
    _counters.callbacks.append(fn)


def off_committed_tally(fn: Callable[[list[Tally]], None]) -> None:
    """Stop calling ``fn`` (see :func:`on_committed_tally`); unknown functions are ignored."""
    try:
        _counters.callbacks.remove(fn)
    except ValueError:
        pass


def counting() -> bool:
    """Whether anybody listens for tallies (see :func:`on_committed_tally`)."""
    return bool(_counters.callbacks)


def tally(session: Session, kind: str, component: str, operation: str, rows: int) -> None:
    """Count ``rows`` written in ``session``'s transaction, reported once it commits (a no-op
    while nobody listens, so writes pay nothing for metrics that are off)."""
    if _counters.callbacks:
        session.info.setdefault(_TALLY, []).append((kind, component, operation, rows))


class _Wakers:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []


_wakers = _Wakers()


def on_audited_commit(fn: Callable[[], None]) -> None:
    """Call ``fn()`` (quickly, without raising) after each commit in this process that wrote
    audit rows."""
    _wakers.callbacks.append(fn)


def off_audited_commit(fn: Callable[[], None]) -> None:
    """Stop calling ``fn`` (see :func:`on_audited_commit`); unknown functions are ignored."""
    try:
        _wakers.callbacks.remove(fn)
    except ValueError:
        pass


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.info.get(_AUDITED):
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            connection.execute(_NOTIFY)  # delivered when (and only if) the transaction commits


# Listening on the base Session class (not a subclass) means sessions that host apps create
# themselves and hand to ``use_session`` get the same bookkeeping. Both events also fire for a
# savepoint, which is not the end of the transaction.
@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if not session.in_nested_transaction() and session.info.pop(_AUDITED, False):
        call_listeners(list(_wakers.callbacks))
    if not session.in_nested_transaction():  # a savepoint released: its outer one may roll back
        tallies = session.info.pop(_TALLY, None)
        if tallies:
            call_listeners(list(_counters.callbacks), tallies)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    if not session.in_nested_transaction():  # a savepoint's rows go by discard_tallies_since
        session.info.pop(_AUDITED, None)
        session.info.pop(_TALLY, None)
