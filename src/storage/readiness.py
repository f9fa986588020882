"""Liveness and readiness: is the process up, and can it serve (the database answers and its
tables match the models)?

Comparing the tables with the models reads the database's catalogue (a query or two per
table), too much for every probe: :class:`SchemaCheck` remembers the result, computed when the
app starts (``bootstrap``), again after a restore, and at most every ``max_age`` seconds.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel
from sqlalchemy import MetaData, text
from sqlmodel import SQLModel

from storage import changes
from storage import database as storage_database
from storage.errors import DatabaseUnavailableError, SchemaDriftError, StorageError
from storage.migrations import plan_sqlmodel_migrations

if TYPE_CHECKING:
    from storage.database import Database

__all__ = ["Liveness", "Readiness", "SchemaCheck"]


class Liveness(BaseModel):
    """``GET /db/live``: the process answers (the database is not asked)."""

    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    """``GET /db/ready``: the database answers and its tables match the models."""

    status: Literal["ready"] = "ready"
    backend: str


def backend_name(db: Database | None = None) -> str:
    """``sqlite``, ``postgresql``, ``mariadb`` or ``mysql``: the database in use."""
    dialect = (db or storage_database.get_database()).engine.dialect
    return "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name


def check_reachable(db: Database | None = None) -> None:
    """Run ``SELECT 1``.

    Raises:
        DatabaseUnavailableError: the database cannot be reached; the message names the
            driver's error class, never its text.
    """
    db = db or storage_database.get_database()
    try:
        # A read session: on SQLite it takes no write lock, so it never waits for writers.
        with db.read_session() as session:
            session.execute(text("SELECT 1"))
    except StorageError as exc:
        cause = exc.__cause__ or exc
        raise DatabaseUnavailableError(
            f"the database cannot be reached ({type(getattr(cause, 'orig', cause)).__name__})"
        ) from exc


class SchemaCheck:
    """Whether the database's tables match the models, remembered between probes.

    Args:
        metadata: the models; default ``SQLModel.metadata`` (what ``bootstrap`` creates).
        database: default :func:`storage.database.get_database`, at call time.
        max_age: seconds a result is trusted before the tables are read again.
    """

    def __init__(
        self,
        metadata: MetaData | None = None,
        *,
        database: Database | None = None,
        max_age: float = 60.0,
    ) -> None:
        self._metadata = metadata if metadata is not None else SQLModel.metadata
        self._database = database
        self._max_age = max_age
        self._lock = threading.Lock()
        self._drift: list[str] | None = None
        self._checked_at = 0.0
        _checks.add(self)

    def refresh(self) -> list[str]:
        """Compare the tables with the models now; returns the differences (empty: none)."""
        db = self._database or storage_database.get_database()
        plan = plan_sqlmodel_migrations(self._metadata, engine=db.engine)
        drift = [str(item) for item in [*plan.steps, *plan.problems]]
        with self._lock:
            self._drift, self._checked_at = drift, time.monotonic()
        return drift

    def forget(self) -> None:
        """Read the tables again at the next :meth:`check` (after a restore or a migration)."""
        with self._lock:
            self._drift = None

    def check(self) -> None:
        """Raise unless the tables matched the models when last compared.

        Raises:
            SchemaDriftError: they differ; the message lists how (tables and columns).
            StorageError: the database could not be read.
        """
        with self._lock:
            drift = self._drift
            fresh = time.monotonic() - self._checked_at < self._max_age
        if drift is None or not fresh:
            drift = self.refresh()
        if drift:
            shown = "; ".join(drift[:10]) + ("; ..." if len(drift) > 10 else "")
            raise SchemaDriftError(f"the database differs from the models: {shown}")


_checks: weakref.WeakSet[SchemaCheck] = weakref.WeakSet()


@changes.on_database_restored
def _forget_after_restore() -> None:
    for check in list(_checks):
        check.forget()
