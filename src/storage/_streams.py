"""The change feed over HTTP: Server-Sent Events routes (``GET /db/changes``,
``GET /{component}/changes``), built on FastAPI's own ``fastapi.sse``.

Each event is one audit row: ``id`` the audit id, ``event`` the operation, ``data`` a JSON
object with ``component``, ``record_id``, ``operation``, ``actor``, ``timestamp``, ``before``
and ``after``. A stream opens with a comment (``: ready``) once it is following, and sends a
keep-alive comment after 15 idle seconds (for proxies). A client that reconnects with the
``Last-Event-ID`` header (browsers do it themselves) or ``?after=ID`` gets every event after
that id, once each. On a restore the stream sends one ``reset`` event and carries on.

Streams end when the server shuts down: on ``SIGINT``/``SIGTERM`` (before the server waits for
open connections, which streams would otherwise keep open) and in the router's lifespan.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.params import Depends as DependsParam
from fastapi.responses import StreamingResponse
from fastapi.sse import KEEPALIVE_COMMENT, ServerSentEvent, format_sse_event

from storage._endpoints import typed_endpoint
from storage.changes import ChangeEvent
from storage.errors import DatabaseUnavailableError, ValidationError
from storage.feed import ChangeFeed, close_all, get_feed
from storage.http import StorageRoute

if TYPE_CHECKING:
    from storage.database import Database

__all__ = [
    "STREAM_DESCRIPTION",
    "STREAM_RESPONSES",
    "After",
    "Follow",
    "LastEventId",
    "StreamRoute",
    "add_change_stream",
    "EventStreamResponse",
    "change_stream",
    "encode_event",
    "feed_position",
    "feed_lifespan_of",
    "parse_cursor",
    "resume_after_in",
]

RETRY_MS = 2000  # how soon a browser reconnects after the stream broke
KEEPALIVE_SECONDS = 15.0
# As FastAPI sends them for its own event streams: no caching, no buffering proxy (nginx).
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_DESCRIPTION = (
    "Server-Sent Events: one event per committed write (an audit row), in commit order, from "
    "every server on the database. `id` is the audit id, `event` the operation, `data` a JSON "
    "object (component, record_id, operation, actor, timestamp, before, after). Resume with "
    "the `Last-Event-ID` header or `after`: every later event arrives once. Models with "
    "`enable_auditing=False` write no audit rows and have no events."
)

After = Annotated[
    int | None,
    Query(ge=0, le=2**63 - 1, description="Start after this audit id (as Last-Event-ID)."),
]
LastEventId = Annotated[
    str | None, Header(alias="Last-Event-ID", description="Sent by EventSource on reconnect.")
]
Follow = Annotated[
    bool, Query(description="Keep following; false ends the stream once it has caught up.")
]


def parse_cursor(value: str | None, parts: int = 1) -> tuple[int, ...] | None:
    """The numbers in a ``Last-Event-ID`` (``"12"``, or ``"12.40"`` for two parts).

    Raises:
        ValidationError: it is not ``parts`` non-negative integers joined by dots.
    """
    if value is None or not value.strip():
        return None
    pieces = value.strip().split(".")
    if len(pieces) != parts or not all(p.isascii() and p.isdigit() for p in pieces):
        shape = "an audit id (a whole number)" if parts == 1 else "'<audit id>.<line seq>'"
        raise ValidationError(f"Last-Event-ID must be {shape}")
    numbers = tuple(int(piece) for piece in pieces)
    if any(number > 2**63 - 1 for number in numbers):
        raise ValidationError("Last-Event-ID is out of range")
    return numbers


async def feed_position(database: Database | None = None) -> int:
    """The change feed's head, starting it if need be: where a stream "from now" starts.

    Args:
        database: whose audit log; default :func:`storage.database.get_database`.

    Raises:
        DatabaseUnavailableError: the feed cannot read the audit log (503).
    """
    _end_streams_on_exit_signals()
    try:
        return await get_feed(database).position()
    except TimeoutError as exc:
        raise DatabaseUnavailableError("the change feed cannot read the audit log") from exc


def resume_after_in(database: Database | None = None) -> Callable[..., Awaitable[int]]:
    """The dependency that gives the audit id a change stream of ``database`` starts after:
    ``Last-Event-ID``, else ``after``, else now. Resolved before the stream starts, so a bad
    id is a 422 and a database that cannot be read a 503."""

    async def resume_after(after: After = None, last_event_id: LastEventId = None) -> int:
        resume = parse_cursor(last_event_id)
        head = await feed_position(database)
        if resume:
            return resume[0]
        return head if after is None else after

    return resume_after


def change_stream(
    feed: ChangeFeed,
    *,
    after: int,
    components: list[str] | None = None,
    operations: list[str] | None = None,
    follow: bool = True,
    shape: Callable[[ChangeEvent], ServerSentEvent | None] | None = None,
) -> EventStreamResponse:
    """The response that streams the feed's events after ``after``.

    Each batch of events the feed has at once goes out in one write, and an event goes out as
    it was encoded once for every client (:attr:`ChangeEvent.sse`); ``shape`` turns an event
    into another :class:`ServerSentEvent` (or skips it) instead.
    """
    batches = feed.batches(
        after=after,
        components=components or (),
        operations=operations or (),
        follow=follow,
        idle=KEEPALIVE_SECONDS,
    )

    async def body() -> AsyncIterator[bytes]:
        yield format_sse_event(comment="ready", retry=RETRY_MS)
        async for batch in batches:
            if not batch:
                yield KEEPALIVE_COMMENT  # 15 idle seconds: for proxies, and to find gone clients
            elif shape is None:
                yield b"".join(event.sse for event in batch)
            else:
                chunk = b"".join(encode_event(e) for e in map(shape, batch) if e is not None)
                if chunk:
                    yield chunk

    return EventStreamResponse(body(), headers=_STREAM_HEADERS)


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response of bytes already encoded as Server-Sent Events.

    FastAPI's ``EventSourceResponse`` as a route's ``response_class`` makes the route encode
    each yielded item on its own (a task, two memory streams and a timeout per event); with a
    few hundred clients on one server that cost more than the writes. The change streams send
    each event as encoded once for every client (with ``fastapi.sse.format_sse_event``), a
    batch at a time.
    """

    media_type = "text/event-stream"


class StreamRoute(StorageRoute):
    """The route of an endpoint that returns an :class:`EventStreamResponse`; give it
    ``response_class=Response`` and ``responses=STREAM_RESPONSES``.

    Its 200 is documented as ``text/event-stream`` and its errors as the JSON they are
    (with ``response_class=EventStreamResponse`` FastAPI would file the error bodies under
    ``text/event-stream`` too, and generated clients would parse them from the stream).
    """

    kind = "stream"


STREAM_RESPONSES: dict[int | str, Any] = {
    200: {
        "description": "Server-Sent Events",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
"""The documented 200 of a :class:`StreamRoute`."""


def encode_event(event: ServerSentEvent) -> bytes:
    """The wire form of an event whose ``data`` is given as ``raw_data`` (already JSON)."""
    return format_sse_event(
        data_str=event.raw_data, event=event.event, id=event.id, comment=event.comment
    )


Components = Annotated[
    list[str] | None,
    Query(alias="component", description="Only these components (repeatable)."),
]
Operations = Annotated[list[str] | None, Query(description="Only these operations (repeatable).")]


def add_change_stream(
    router: APIRouter,
    path: str,
    *,
    component: str | None = None,
    dependencies: list[DependsParam],
    name: str,
    operation_id: str | None = None,
    database: Database | None = None,
) -> None:
    """Add ``GET path``: the change stream of ``database`` (default
    :func:`storage.database.get_database`), of every component or of ``component`` only
    (route ``name``; OpenAPI ``operation_id``, default ``name``)."""
    streams = _Streams(database, component)
    endpoint = streams.all_changes if component is None else streams.changes_of
    start = (int, Depends(resume_after_in(database)))
    router.add_api_route(
        path,
        typed_endpoint(endpoint, start=start),
        methods=["GET"],
        response_class=Response,
        responses=STREAM_RESPONSES,
        route_class_override=StreamRoute,
        dependencies=dependencies,
        name=name,
        operation_id=operation_id or name,
        summary="Committed writes, live (Server-Sent Events)",
        description=STREAM_DESCRIPTION,
    )


class _Streams:
    """The change stream endpoints of one database (and component)."""

    def __init__(self, database: Database | None, component: str | None) -> None:
        self.database = database
        self.component = component

    async def all_changes(
        self,
        start: int,
        follow: Follow = True,
        component: Components = None,
        operation: Operations = None,
    ) -> EventStreamResponse:
        feed = get_feed(self.database)
        return change_stream(
            feed, after=start, components=component, operations=operation, follow=follow
        )

    async def changes_of(
        self, start: int, follow: Follow = True, operation: Operations = None
    ) -> EventStreamResponse:
        feed, components = get_feed(self.database), [self.component or ""]
        return change_stream(
            feed, after=start, components=components, operations=operation, follow=follow
        )


def feed_lifespan_of(
    database: Database | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A router lifespan that ends the open change streams of ``database`` when the app shuts
    down."""

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        get_feed(database).close()

    return lifespan


class _ExitSignals:
    installed = False
    lock = threading.Lock()


def _end_streams_on_exit_signals() -> None:
    # A server waits for open connections before its lifespan ends, and a stream never ends
    # by itself; so the stream must end first, when the server is told to stop. Chained in
    # front of the server's own handler (uvicorn's), which is still called.
    if threading.current_thread() is not threading.main_thread():
        return
    with _ExitSignals.lock:
        if _ExitSignals.installed:
            return
        _ExitSignals.installed = True
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(number)
            if callable(previous):
                signal.signal(number, _chained(previous))


def _chained(previous: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
    def handle(number: int, frame: Any) -> Any:
        close_all()
        return previous(number, frame)

    return handle
