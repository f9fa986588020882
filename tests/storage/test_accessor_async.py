"""``ModelAccessor.get_async``: the same record as ``get``, without blocking the event loop."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

from storage import database
from storage.accessor import ModelAccessor
from support.dataset import every_kind_of_sample
from support.models import Recipe, Sample, User

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make()

    return anyio.run(main)


@pytest.fixture
def users() -> ModelAccessor[User]:
    return ModelAccessor(User, "users")


@pytest.mark.usefixtures("backend")
class TestEveryBackend:
    def test_same_values_as_get_for_every_column_type(self) -> None:
        samples = ModelAccessor(Sample, "samples")
        stored = samples.insert(every_kind_of_sample())
        expected = samples.get(stored.id)
        for attempt in range(2):  # the first read opens the connection for immediate reads
            found = run(lambda: samples.get_async(str(stored.id)))
            assert found is not None, attempt
            assert found.model_dump() == expected.model_dump()  # type: ignore[union-attr]
            assert samples.snapshot(found) == samples.snapshot(expected)  # type: ignore[arg-type]

    def test_missing_and_soft_deleted(self, users: ModelAccessor[User]) -> None:
        user = users.insert(User(name="ada"))
        users.delete(user.id)
        for _ in range(2):
            assert run(lambda: users.get_async(user.id)) is None
            assert run(lambda: users.get_async(user.id + 1)) is None
            found = run(lambda: users.get_async(user.id, include_deleted=True))
            assert found is not None and found.deleted_at is not None

    def test_string_keys(self) -> None:
        recipes = ModelAccessor(Recipe, "recipes")
        recipes.insert(Recipe(name="weld/seam 1", body="x"))
        for _ in range(2):
            found = run(lambda: recipes.get_async("weld/seam 1"))
            assert found is not None and found.body == "x"

    def test_inside_a_transaction_sees_its_uncommitted_writes(
        self, users: ModelAccessor[User]
    ) -> None:
        run(lambda: users.get_async(1))  # opens the immediate-read connection on SQLite

        async def main() -> tuple[str | None, str | None]:
            with database.transaction():
                user = users.insert(User(name="pending"))
                inside = await users.get_async(user.id)
            after = await users.get_async(user.id)
            return (inside.name if inside else None), (after.name if after else None)

        assert anyio.run(main) == ("pending", "pending")

    def test_instance_can_be_saved_back(self, users: ModelAccessor[User]) -> None:
        user = users.insert(User(name="ada", age=30))
        run(lambda: users.get_async(user.id))
        found = run(lambda: users.get_async(user.id))
        assert found is not None
        found.age = 31
        users.save(found, actor="test")
        assert users.get(user.id).age == 31  # type: ignore[union-attr]


def test_reads_in_the_event_loop_thread_once_prepared(
    sqlite_db: Path, users: ModelAccessor[User]
) -> None:
    users.insert(User(name="ada"))
    db = database.get_database()
    assert not db.reads_now
    threads: list[str] = []

    async def main() -> None:
        loop_thread = threading.current_thread().name
        await users.get_async(1)  # a worker thread reads, then opens the connection
        assert db.reads_now
        before = threading.active_count()
        await users.get_async(1)
        threads.append(loop_thread)
        assert threading.active_count() == before

    anyio.run(main)
    assert threads


def test_a_lock_on_the_file_never_blocks_the_event_loop(
    sqlite_db: Path, users: ModelAccessor[User]
) -> None:
    """While another connection keeps readers out, the loop keeps running and the read waits
    in a worker thread, then returns the row once the lock is gone."""
    users.insert(User(name="ada"))
    db = database.get_database()
    # Only a connection in exclusive locking mode keeps WAL readers out, and it needs the
    # file to itself to take that lock: every other connection closes first.
    db.dispose()
    locker = sqlite3.connect(str(sqlite_db), isolation_level=None, check_same_thread=False)
    locker.execute("PRAGMA locking_mode = EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute("UPDATE user SET name = 'grace' WHERE id = 1")
    locker.execute("COMMIT")  # the exclusive lock stays until the connection closes
    ticks = 0

    async def main() -> str | None:
        nonlocal ticks
        found: list[User | None] = []

        async def read() -> None:
            found.append(await users.get_async(1))

        async with anyio.create_task_group() as group:
            group.start_soon(read)
            for _ in range(20):
                await anyio.sleep(0.01)
                ticks += 1
            assert not found  # still waiting for the lock, in a worker thread
            await anyio.to_thread.run_sync(locker.close)
        return found[0].name if found[0] else None

    try:
        assert anyio.run(main) == "grace"
    finally:
        locker.close()
    assert ticks == 20
    assert db.reads_now


def test_connection_in_use_falls_back_to_a_worker_thread(
    sqlite_db: Path, users: ModelAccessor[User]
) -> None:
    users.insert(User(name="ada"))
    db = database.get_database()
    assert db.prepare_read_now()
    with db._now_lock:  # another thread is in the middle of an immediate read
        found = run(lambda: users.get_async(1))
    assert found is not None and found.name == "ada"
