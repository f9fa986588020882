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
from typing import ParamSpec, TypeVar

from storage import database
from storage.errors import DatabaseBusyError, is_deadlock

__all__ = ["retry_on_deadlock"]

P = ParamSpec("P")
T = TypeVar("T")

_ATTEMPTS = 4


def retry_on_deadlock(function: Callable[P, T]) -> Callable[P, T]:
    """Decorate a function that runs one transaction: run it again (up to 4 times in all, a
    few milliseconds apart) when the database ended it as a deadlock victim."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        attempt = 1
        while True:
            try:
                return function(*args, **kwargs)
            except DatabaseBusyError as exc:
                joined = database.get_database().current_session() is not None
                if joined or attempt >= _ATTEMPTS or not is_deadlock(exc):
                    raise
            time.sleep(random.uniform(0.005, 0.03) * attempt)
            attempt += 1

    return run
