"""The change feed on each backend: order, exactly once, resuming, out-of-order commits,
restores; with real databases and real concurrent transactions."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert
from sqlmodel import Session

from storage import changes, database
from storage.accessor import ModelAccessor
from storage.auditor import AUDIT_TABLE, audit_row
from storage.backup import write_snapshot
from storage.changes import RESET, ChangeEvent, subscribe
from storage.feed import ChangeFeed, get_feed
from storage.restore import restore_upload
from support.models import User


@pytest.fixture
def users(backend: str) -> Iterator[ModelAccessor[User]]:
    yield ModelAccessor(User, "users")
    get_feed().close()


async def take(
    events: AsyncIterator[ChangeEvent], count: int, timeout: float = 10
) -> list[ChangeEvent]:
    got: list[ChangeEvent] = []

    async def collect() -> None:
        async for event in events:
            got.append(event)
            if len(got) == count:
                return

    await asyncio.wait_for(collect(), timeout)
    return got


def history(after: int = 0, **filters: object) -> list[ChangeEvent]:
    async def read() -> list[ChangeEvent]:
        return [event async for event in subscribe(after=after, follow=False, **filters)]  # type: ignore[arg-type]

    return asyncio.run(read())


def test_a_subscriber_sees_each_write_once_in_order(users: ModelAccessor[User]) -> None:
    async def scenario() -> list[ChangeEvent]:
        events = subscribe(after=await get_feed().position())  # fixed before the writes
        first = asyncio.ensure_future(take(events, 4))
        await asyncio.sleep(0.05)
        ada = await asyncio.to_thread(users.insert, User(name="Ada"), actor="op")
        await asyncio.to_thread(lambda: users.update(ada.id, actor="op", age=36))
        await asyncio.to_thread(users.insert_many, [User(name="Bo")], actor="op")
        await asyncio.to_thread(users.delete, ada.id, actor="op")
        return await first

    events = asyncio.run(scenario())
    assert [e.operation for e in events] == ["create", "update", "create", "soft_delete"]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[1].before is not None and events[1].before["age"] is None
    assert events[1].after is not None and events[1].after["age"] == 36
    assert {e.actor for e in events} == {"op"} and {e.component for e in events} == {"users"}


def test_resuming_after_an_id_gives_exactly_the_rest(users: ModelAccessor[User]) -> None:
    users.insert_many([User(name=f"u{i}") for i in range(30)], actor="op")
    every = history()
    assert len(every) == 30
    middle = every[11].id
    assert [e.id for e in history(after=middle)] == [e.id for e in every[12:]]
    assert history(after=every[-1].id) == []


def test_without_follow_the_stream_ends_after_what_was_committed_before_it(
    users: ModelAccessor[User],
) -> None:
    # Audit rows written on a connection of its own (as by another server): this process's
    # tail is not told and reads them at its next poll; a reader that does not follow gets
    # them at once.
    users.insert(User(name="Ada"), actor="op")
    asyncio.run(get_feed().position())  # the tail is running and has read Ada
    engine = create_engine(database.get_database().url)
    try:
        with engine.begin() as connection:
            for name in ("Bo", "Cy"):
                row = audit_row(
                    component="users", operation="create", record_id=name, actor="other",
                    after={"name": name},
                )  # fmt: skip
                connection.execute(insert(AUDIT_TABLE), [row])
        got = history()
    finally:
        engine.dispose()
    assert [event.after["name"] for event in got if event.after] == ["Ada", "Bo", "Cy"]


def test_filters_by_component_and_operation(users: ModelAccessor[User]) -> None:
    other = ModelAccessor(User, "people")
    ada = users.insert(User(name="Ada"), actor="op")
    other.insert(User(name="Bo"), actor="op")
    users.update(ada.id, actor="op", age=1)
    assert [e.operation for e in history(components=["users"])] == ["create", "update"]
    assert [e.component for e in history(operations=["create"])] == ["users", "people"]


def test_a_reader_far_behind_reads_from_the_database(users: ModelAccessor[User]) -> None:
    feed = ChangeFeed(database.get_database(), buffer_size=5, page_size=7)

    async def scenario() -> list[ChangeEvent]:
        start = await feed.position()
        await asyncio.to_thread(
            users.insert_many, [User(name=f"u{i}") for i in range(40)], actor="op"
        )
        deadline = time.monotonic() + 10
        while feed.head < start + 40 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return [e async for e in feed.subscribe(after=start, follow=False)]

    try:
        events = asyncio.run(scenario())
    finally:
        feed.close()
    assert len(events) == 40
    assert [e.id for e in events] == sorted({e.id for e in events})


def _audit(session: Session, name: str) -> None:
    # Without the hash chain, as a server of an older version on the same database writes
    # (a rolling upgrade): through write_audit_rows the second transaction would wait at the
    # chain's head until the first ends, and ids would commit in their order.
    row = audit_row(component="interleaved", operation="create", record_id=name, actor="t")
    session.connection().execute(insert(AUDIT_TABLE), [row])
    changes.mark_audited(session)


@pytest.mark.parametrize("order", ["commit", "rollback"])
def test_transactions_committing_out_of_id_order_skip_nothing(
    users: ModelAccessor[User], backend: str, order: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has one writer at a time: ids are committed in the order given")
    engine = database.get_engine()

    async def scenario() -> list[ChangeEvent]:
        events = subscribe(after=await get_feed().position(), components=["interleaved"])
        received = asyncio.ensure_future(take(events, 1 if order == "rollback" else 2, timeout=20))
        first, second = Session(engine), Session(engine)
        try:
            await asyncio.to_thread(_audit, first, "lower")  # takes the lower id, stays open
            await asyncio.to_thread(_audit, second, "higher")
            await asyncio.to_thread(second.commit)
            await asyncio.sleep(1.5)  # the higher id is committed; the lower one is not
            assert not received.done(), "an event was delivered past an open lower id"
            if order == "commit":
                await asyncio.to_thread(first.commit)
            else:
                await asyncio.to_thread(first.rollback)
            return await received
        finally:
            first.close()
            second.close()

    events = asyncio.run(scenario())
    expected = ["lower", "higher"] if order == "commit" else ["higher"]
    assert [e.record_id for e in events] == expected
    assert [e.record_id for e in history(components=["interleaved"])] == expected


def test_a_write_through_a_session_the_app_opened_is_announced(users: ModelAccessor[User]) -> None:
    async def scenario() -> list[ChangeEvent]:
        received = asyncio.ensure_future(
            take(subscribe(after=await get_feed().position(), components=["users"]), 1)
        )
        with Session(database.get_engine()) as session, database.use_session(session):
            await asyncio.to_thread(users.insert, User(name="Own"), actor="app")
        return await received

    (event,) = asyncio.run(scenario())
    assert event.after is not None and event.after["name"] == "Own"


def test_an_unknown_resume_id_is_a_reset(users: ModelAccessor[User]) -> None:
    users.insert(User(name="Ada"), actor="op")

    async def scenario() -> list[ChangeEvent]:
        return await take(subscribe(after=10**9), 1)

    (event,) = asyncio.run(scenario())
    assert event.operation == RESET and event.id == get_feed().head


def test_a_restore_resets_the_subscribers(users: ModelAccessor[User], tmp_path: Path) -> None:
    users.insert(User(name="Ada"), actor="op")
    snapshot = tmp_path / "snapshot.sqlite"
    write_snapshot(snapshot)
    users.insert_many([User(name=f"u{i}") for i in range(5)], actor="op")

    async def scenario() -> list[ChangeEvent]:
        received = asyncio.ensure_future(take(subscribe(after=await get_feed().position()), 2))
        with snapshot.open("rb") as upload:
            await asyncio.to_thread(restore_upload, upload, actor="admin")
        await asyncio.sleep(0.3)
        await asyncio.to_thread(users.insert, User(name="after"), actor="op")
        return await received

    try:
        reset, after = asyncio.run(scenario())
    finally:
        get_feed().close()
    assert reset.operation == RESET
    assert after.operation == "create" and after.after is not None
    assert after.after["name"] == "after" and after.id > reset.id


def test_many_writers_while_a_subscriber_follows(users: ModelAccessor[User]) -> None:
    def write(worker: int) -> None:
        for i in range(25):
            users.insert(User(name=f"w{worker}-{i}"), actor=f"w{worker}")

    async def scenario() -> list[ChangeEvent]:
        received = asyncio.ensure_future(
            take(
                subscribe(after=await get_feed().position(), components=["users"]), 100, timeout=60
            )
        )
        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(lambda: [thread.join() for thread in threads])
        return await received

    events = asyncio.run(scenario())
    assert len({e.id for e in events}) == 100
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert [e.id for e in events] == [e.id for e in history(components=["users"])]
