"""Running a transaction again when the database picked it as a deadlock victim.

Under concurrent writers PostgreSQL and MariaDB may end one transaction of a deadlock (or, at
``SERIALIZABLE``, a serialization failure) and expect the client to run it again: the whole
transaction was rolled back, so a second try is safe. :func:`retry_on_deadlock` does that for a
function that runs one transaction of its own; inside a caller's transaction it does not retry
(only the caller can run the whole transaction again).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from storage.database import Database
from storage.errors import DatabaseBusyError, is_deadlock

__all__ = ["OnDatabase", "retry_on_deadlock", "retrying"]

P = ParamSpec("P")
T = TypeVar("T")

_ATTEMPTS = 4


class OnDatabase(Protocol):
    """An object whose methods run their transactions on :attr:`database`."""

    @property
    def database(self) -> Database: ...


S = TypeVar("S", bound=OnDatabase)


def retrying(database: Database, function: Callable[[], T]) -> T:
    """Call ``function``, which runs one transaction on ``database``, and call it again (up to
    4 times in all, a few milliseconds apart) when the database ended it as a deadlock victim.
    """
    attempt = 1
    while True:
        try:
            return function()
        except DatabaseBusyError as exc:
            joined = database.current_session() is not None
            if joined or attempt >= _ATTEMPTS or not is_deadlock(exc):
                raise
        time.sleep(random.uniform(0.005, 0.03) * attempt)
        attempt += 1


def retry_on_deadlock(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """Decorate a method that runs one transaction on ``self.database``: run it again (see
    :func:`retrying`) when the database ended it as a deadlock victim."""

    @functools.wraps(method)
    def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return retrying(self.database, lambda: method(self, *args, **kwargs))

    return run
