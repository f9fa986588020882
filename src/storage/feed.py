"""The change feed: the audit log, followed live by every process, nothing lost.

One :class:`ChangeFeed` per database and process reads the audit log as it grows (with an
:class:`storage._tail.AuditTail`: a thread and connection of its own), and fans the events out
in memory to every subscriber of the process (the SSE routes,
:func:`storage.changes.subscribe`). It reads only up to the audit log's watermark (see
:mod:`storage._watermark`), so events come in id order, which is commit order, each once, also
when transactions commit out of id order.

Subscribers do not queue: each keeps only its cursor (the last id it delivered) and reads the
feed's recent events from that cursor on. The feed keeps the last ``buffer_size`` events; a
subscriber that fell further behind (a slow client, one resuming an old ``Last-Event-ID``)
reads the rest from the database. A subscriber that stops reading holds nothing back and costs
no memory beyond its own place.

A restore replaces the audit log: subscribers then get one event with operation ``"reset"``
(its ``id`` is where they carry on from) and should reload what they show.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from storage import database as storage_database
from storage._tail import AUDIT_TABLE, AuditTail
from storage._watermark import highest_id
from storage.auditor import utcnow
from storage.changes import RESET, ChangeEvent

if TYPE_CHECKING:
    from storage.database import Database

__all__ = ["ChangeFeed", "close_all", "get_feed", "subscribers", "use_feed"]

logger = logging.getLogger("storage.feed")


class ChangeFeed:
    """Follows one database's audit log for this process (see the module docstring).

    Args:
        database: the database; default :func:`storage.database.get_database`.
        buffer_size: recent events kept in memory for subscribers.
        poll_interval: seconds between cheap checks for new rows on SQLite and MariaDB (and
            between rechecks while PostgreSQL writers are in flight).
        gap_grace: MariaDB: seconds an empty hole in the ids must be seen before it is
            passed (see :mod:`storage._watermark`).
        page_size: rows read from the database at a time.
    """

    def __init__(
        self,
        database: Database | None = None,
        *,
        buffer_size: int = 10_000,
        poll_interval: float = 0.05,
        gap_grace: float = 1.0,
        page_size: int = 1000,
    ) -> None:
        if buffer_size < 1 or page_size < 1 or poll_interval <= 0:
            raise ValueError("buffer_size, page_size and poll_interval must be positive")
        self._db = database or _default_database()
        self._buffer_size = buffer_size
        self._page = page_size
        self._lock = threading.Lock()
        self._events: list[ChangeEvent] = []
        self._floor = 0  # every event with floor < id <= head is in _events
        self._head = 0
        self._epoch = 0  # bumped by a reset
        self._subscribers = 0
        self._pulses: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._tail = AuditTail(
            self._db,
            self,
            poll_interval=poll_interval,
            gap_grace=gap_grace,
            page_size=page_size,
            keep=buffer_size,
        )

    def __repr__(self) -> str:
        return f"ChangeFeed(head={self._head}, buffered={len(self._events)})"

    @property
    def database(self) -> Database:
        """The database whose audit log it follows."""
        return self._db

    @property
    def subscribers(self) -> int:
        """How many streams of this process follow the feed now."""
        return self._subscribers

    @property
    def head(self) -> int:
        """The audit id up to which the feed has read (every row up to it is final)."""
        return self._head

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start reading (once; a no-op while it runs) and wait until the head is known.

        Raises:
            TimeoutError: the database did not answer within ``timeout`` seconds.
        """
        self._tail.start()
        if not self._tail.ready.wait(timeout):
            raise TimeoutError("the change feed could not read the audit log")

    def close(self, *, wait: bool = True) -> None:
        """End every subscriber's stream and stop reading; :meth:`start` starts it again.

        Args:
            wait: wait (up to 5 s) for the reading thread to end.
        """
        self._tail.stop(wait=False)
        self.pulse()
        self._tail.stop(wait=wait)

    async def position(self) -> int:
        """Start reading if need be, and return the head: where a subscriber "from now" starts."""
        if not self._tail.ready.is_set() or self._tail.stopping.is_set():
            await asyncio.to_thread(self.start)
        return self._head

    # -- subscribers -----------------------------------------------------------------------

    async def subscribe(
        self,
        *,
        after: int | None = None,
        components: Iterable[str] = (),
        operations: Iterable[str] = (),
        follow: bool = True,
    ) -> AsyncIterator[ChangeEvent]:
        """The events after ``after`` (``None``: from the head when it first runs), in order,
        each once (see :func:`storage.changes.subscribe`)."""
        batches = self.batches(
            after=after, components=components, operations=operations, follow=follow
        )
        async for batch in batches:
            for event in batch:
                yield event

    async def batches(
        self,
        *,
        after: int | None = None,
        components: Iterable[str] = (),
        operations: Iterable[str] = (),
        follow: bool = True,
        idle: float | None = None,
    ) -> AsyncIterator[list[ChangeEvent]]:
        """What :meth:`subscribe` gives, a batch at a time: every event there is to send at
        once (what a server writes to a client in one go). With ``idle``, an empty batch after
        that many seconds without events (time for a keep-alive)."""
        with self._lock:
            self._subscribers += 1
        try:
            async with aclosing(
                self._batches(after, components, operations, follow=follow, idle=idle)
            ) as batches:
                async for batch in batches:
                    yield batch
        finally:
            with self._lock:
                self._subscribers -= 1

    async def _batches(
        self,
        after: int | None,
        components: Iterable[str],
        operations: Iterable[str],
        *,
        follow: bool,
        idle: float | None,
    ) -> AsyncGenerator[list[ChangeEvent]]:
        wanted = _Filter(frozenset(components), frozenset(operations))
        head = await self.position()
        # Without follow, the stream ends once it has sent what was committed when it began,
        # even what this process's tail has not read yet.
        until = 0 if follow else await asyncio.to_thread(self._highest)
        epoch = self._epoch
        cursor = head if after is None else after
        if cursor > self._head and cursor > await asyncio.to_thread(self._highest):
            cursor = self._head
            yield [self._reset_event(cursor)]  # an id this database never gave out
        quiet_since = time.monotonic()
        while not self._tail.stopping.is_set():
            pulse = self._pulse_for(asyncio.get_running_loop())
            if self._epoch != epoch:
                epoch, cursor = self._epoch, self._head
                yield [self._reset_event(cursor)]
                continue
            upto = max(self._head, until)
            if cursor < upto:
                batch, end = await self._next(cursor, upto, wanted)
                if self._epoch != epoch:
                    continue  # read across a restore: start over from the reset
                cursor = end
                if batch:
                    quiet_since = time.monotonic()
                    yield batch
                continue
            if not follow:
                return
            wait = 5.0 if idle is None else quiet_since + idle - time.monotonic()
            if wait <= 0:
                quiet_since = time.monotonic()
                yield []
                continue
            try:
                async with asyncio.timeout(wait):  # no task per wait, unlike wait_for
                    await pulse.wait()
            except TimeoutError:
                pass

    def read(
        self,
        after: int,
        upto: int,
        *,
        components: Sequence[str] = (),
        operations: Sequence[str] = (),
    ) -> list[ChangeEvent]:
        """Events with ``after < id <= upto`` from the database, in order, a page at most."""
        column = AUDIT_TABLE.c.id
        statement = (
            select(AUDIT_TABLE)
            .where(column > after, column <= upto)
            .order_by(column)
            .limit(self._page)
        )
        if components:
            statement = statement.where(AUDIT_TABLE.c.component.in_(components))
        if operations:
            statement = statement.where(AUDIT_TABLE.c.operation.in_(operations))
        with self._db.read_session() as session:
            return [ChangeEvent.from_row(row) for row in session.execute(statement)]

    async def _next(self, cursor: int, head: int, wanted: _Filter) -> tuple[list[ChangeEvent], int]:
        with self._lock:
            if cursor >= self._floor and head <= self._head:
                start = bisect.bisect_right(self._events, cursor, key=_event_id)
                batch = self._events[start : start + self._page]
                # Everything buffered is final, so the cursor may go as far as the head.
                end = batch[-1].id if len(batch) == self._page else self._head
                return wanted.apply(batch), end
        batch = await asyncio.to_thread(
            self.read,
            cursor,
            head,
            components=sorted(wanted.components),
            operations=sorted(wanted.operations),
        )
        return batch, (batch[-1].id if len(batch) == self._page else head)

    def _highest(self) -> int:
        with self._db.read_session() as session:
            return highest_id(session.connection(), AUDIT_TABLE)

    @staticmethod
    def _reset_event(head: int) -> ChangeEvent:
        return ChangeEvent.of(
            id=head,
            component="database",
            record_id="",
            operation=RESET,
            actor="",
            timestamp=utcnow(),
        )

    def _pulse_for(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        pulse = self._pulses.get(loop)
        if pulse is None:
            pulse = self._pulses[loop] = asyncio.Event()
        return pulse

    def _pulse(self, loop: asyncio.AbstractEventLoop) -> None:
        pulse = self._pulses.get(loop)
        self._pulses[loop] = asyncio.Event()
        if pulse is not None:
            pulse.set()

    # -- the sink of the tail ----------------------------------------------------------------

    def restart(self, head: int) -> None:
        with self._lock:
            self._events.clear()
            self._head = self._floor = head

    def append(self, events: list[ChangeEvent], head: int) -> None:
        with self._lock:
            self._events.extend(events)
            excess = len(self._events) - self._buffer_size
            if excess > 0:
                self._floor = self._events[excess - 1].id
                del self._events[:excess]
            self._head = max(self._head, head)

    def reset(self, head: int) -> None:
        logger.info("the audit log was replaced (a restore); the feed carries on at %d", head)
        with self._lock:
            self._events.clear()
            self._head = self._floor = head
            self._epoch += 1
        self.pulse()

    def pulse(self) -> None:
        for loop in list(self._pulses):
            try:
                loop.call_soon_threadsafe(self._pulse, loop)
            except RuntimeError:  # the loop is closed
                self._pulses.pop(loop, None)


@dataclass(frozen=True)
class _Filter:
    components: frozenset[str]
    operations: frozenset[str]

    def apply(self, events: list[ChangeEvent]) -> list[ChangeEvent]:
        if not self.components and not self.operations:
            return events
        return [
            event
            for event in events
            if (not self.components or event.component in self.components)
            and (not self.operations or event.operation in self.operations)
        ]


def _event_id(event: ChangeEvent) -> int:
    return event.id


_feeds: weakref.WeakKeyDictionary[Database, ChangeFeed] = weakref.WeakKeyDictionary()
_feeds_lock = threading.Lock()


def get_feed(database: Database | None = None) -> ChangeFeed:
    """The change feed of ``database`` (default: the default database) in this process."""
    database = database or _default_database()
    with _feeds_lock:
        feed = _feeds.get(database)
        if feed is None:
            feed = _feeds[database] = ChangeFeed(database)
        return feed


def use_feed(feed: ChangeFeed) -> ChangeFeed:
    """Make ``feed`` this process's change feed of its database (for other options than the
    defaults); the one it replaces is closed."""
    with _feeds_lock:
        previous = _feeds.get(feed.database)
        _feeds[feed.database] = feed
    if previous is not None and previous is not feed:
        previous.close()
    return feed


def subscribers() -> int:
    """How many streams follow a change feed in this process, over every database."""
    return sum(feed.subscribers for feed in list(_feeds.values()))


def _default_database() -> Database:
    return storage_database.get_database()  # at call time: tests reload storage.database


def close_all(*, wait: bool = False) -> None:
    """End every stream of every change feed in this process (the server is stopping).

    Args:
        wait: wait for each feed's reading thread to end (not in a signal handler).
    """
    for feed in list(_feeds.values()):  # no lock: this may run in a signal handler
        feed.close(wait=wait)
