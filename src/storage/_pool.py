"""How long work waits for the database: for a pooled connection, and (SQLite) for the writer.

:class:`TimedQueuePool` is SQLAlchemy's ``QueuePool`` that times each checkout; the writer
lock of :class:`storage.database.Database` times its waits too. Both report to the functions
registered with :func:`on_wait` (metrics); while none is registered they time nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.pool import QueuePool

from storage._listeners import call_listeners

__all__ = ["TimedQueuePool", "WaitListener", "off_wait", "on_wait", "timed_wait"]

WaitListener = Callable[[str, float], None]
"""``fn(resource, seconds)``: ``resource`` is ``"connection"`` or ``"writer"``."""


class _Listeners:
    def __init__(self) -> None:
        self.callbacks: list[WaitListener] = []


_listeners = _Listeners()


def on_wait(fn: WaitListener) -> None:
    """Call ``fn(resource, seconds)`` (quickly, without raising) after each wait for a pooled
    connection or for the SQLite writer lock, in this process."""
    _listeners.callbacks.append(fn)


def off_wait(fn: WaitListener) -> None:
    """Stop calling ``fn`` (see :func:`on_wait`); unknown functions are ignored."""
    try:
        _listeners.callbacks.remove(fn)
    except ValueError:
        pass


@contextmanager
def timed_wait(resource: str) -> Iterator[None]:
    """Time the block as a wait for ``resource``, if anybody listens."""
    if not _listeners.callbacks:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        call_listeners(list(_listeners.callbacks), resource, time.perf_counter() - start)


class TimedQueuePool(QueuePool):
    """A ``QueuePool`` that reports how long each checkout took (queueing for a free
    connection, or opening a new one)."""

    def _do_get(self) -> Any:
        with timed_wait("connection"):
            return super()._do_get()
