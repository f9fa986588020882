"""Writers for the soft-delete concurrency tests (tests/storage/test_softdelete_concurrency.py):
each one, in a thread of the test or in a spawned process, waits at a barrier every round and
then writes under that round's parent (inserts, a move, the parent's soft delete), recording
how every write ended."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.queues import Queue
from threading import Barrier
from typing import Any

from sqlmodel import SQLModel

from storage import database
from storage.accessor import ModelAccessor
from storage.errors import DatabaseBusyError, DeletedParentError, LiveChildrenError
from support.models import Bay, Fixture, Permit, Site, Visit

ATTEMPTS = 4
"""Tries of one write while the database is busy (a lock wait that ran out, a deadlock)."""

_CHILDREN: dict[str, Callable[[int, str], SQLModel]] = {
    "bays": lambda parent, label: Bay(code=label, site_id=parent),
    "fixtures": lambda parent, label: Fixture(bay_id=parent),
    "permits": lambda parent, label: Permit(site_id=parent),
}


def accessors() -> dict[str, ModelAccessor[Any]]:
    """An accessor per soft-delete test model, by component."""
    made = [
        ModelAccessor(Site, "sites"),
        ModelAccessor(Bay, "bays"),
        ModelAccessor(Fixture, "fixtures"),
        ModelAccessor(Permit, "permits"),
        ModelAccessor(Visit, "visits"),
    ]
    return {accessor.component: accessor for accessor in made}


@dataclass(frozen=True)
class Outcome:
    """One write: the row it wrote (``key``), or the refusal's class name (``error``)."""

    round: int
    component: str
    operation: str
    key: str | None
    error: str | None


@dataclass
class Tally:
    """How every write of one writer ended."""

    outcomes: list[Outcome] = field(default_factory=list)
    retried: int = 0  # writes run again after a DatabaseBusyError
    unexpected: list[str] = field(default_factory=list)  # anything but a documented refusal

    def attempt(self, round: int, component: str, operation: str, write: Callable[[], Any]) -> bool:
        """Run ``write`` (it returns the key it wrote), again while the database is busy;
        ``True`` when it committed."""
        for _ in range(ATTEMPTS):
            try:
                key = write()
            except DatabaseBusyError:
                self.retried += 1
                continue
            except (DeletedParentError, LiveChildrenError) as exc:
                self.outcomes.append(Outcome(round, component, operation, None, type(exc).__name__))
                return False
            except Exception as exc:  # what the test is there to catch, reported by it
                self.unexpected.append(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
                return False
            if key is None:
                self.unexpected.append(f"{component} {operation} in round {round} wrote nothing")
                return False
            self.outcomes.append(Outcome(round, component, operation, str(key), None))
            return True
        self.unexpected.append(f"{component} {operation} still busy after {ATTEMPTS} tries")
        return False


def insert_under(
    component: str, parents: Sequence[int], per_round: int, start: Barrier, name: str
) -> Tally:
    """Each round, insert up to ``per_round`` rows of ``component`` under that round's parent,
    one transaction each, until one is refused."""
    accessor = accessors()[component]
    tally = Tally()
    for round, parent in enumerate(parents):
        start.wait(timeout=60)
        for n in range(per_round):
            row = _CHILDREN[component](parent, f"{name}-{round}-{n}")
            if not tally.attempt(round, component, "create", partial(_insert, accessor, row, name)):
                break
    return tally


def move_under(
    component: str, column: str, rows: Sequence[int], parents: Sequence[int], start: Barrier
) -> Tally:
    """Each round, move that round's row of ``component`` under that round's parent."""
    accessor = accessors()[component]
    tally = Tally()
    for round, (row, parent) in enumerate(zip(rows, parents, strict=True)):
        start.wait(timeout=60)
        move = partial(_update, accessor, row, {column: parent})
        tally.attempt(round, component, "update", move)
    return tally


def delete_each(component: str, keys: Sequence[int], start: Barrier) -> Tally:
    """Each round, soft-delete that round's row of ``component``: on odd rounds inside a
    transaction that reads the table first, as a route handler may, so that the transaction
    began (and, on MariaDB, took its snapshot) before the children written meanwhile."""
    accessor = accessors()[component]
    tally = Tally()
    for round, key in enumerate(keys):
        start.wait(timeout=60)
        delete = _delete_after_read if round % 2 else _delete
        tally.attempt(round, component, "soft_delete", partial(delete, accessor, key))
    return tally


def insert_in_process(
    url: str,
    busy_timeout: float,
    component: str,
    parents: Sequence[int],
    per_round: int,
    start: Barrier,
    results: Queue[Tally],
) -> None:
    """:func:`insert_under` in a process of its own on the database at ``url``; its tally is
    put on ``results``."""
    database.set_database_url(url)
    database.get_database().set_busy_timeout(busy_timeout)
    try:
        results.put(insert_under(component, parents, per_round, start, "proc"))
    finally:
        database.get_database().dispose()


def _insert(accessor: ModelAccessor[Any], row: SQLModel, actor: str) -> Any:
    return getattr(accessor.insert(row, actor=actor), accessor.primary_key)


def _update(accessor: ModelAccessor[Any], key: int, fields: dict[str, Any]) -> Any:
    moved = accessor.update(key, actor="mover", **fields)
    return None if moved is None else key


def _delete(accessor: ModelAccessor[Any], key: int) -> Any:
    return key if accessor.delete(key, actor="deleter") else None


def _delete_after_read(accessor: ModelAccessor[Any], key: int) -> Any:
    with database.transaction():
        accessor.count()
        return _delete(accessor, key)
