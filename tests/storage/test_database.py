"""storage.database: configuration, SQLite pragmas, transactions, sessions, concurrency."""

from __future__ import annotations

import importlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, event, func, text
from sqlmodel import Session, SQLModel, select

from storage import database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.errors import ConfigurationError, DatabaseBusyError, MissingDependencyError
from storage.prepared import PreparedRead
from support.backends import SERVER_URLS, server_url
from support.dataset import a_long_write, wal_checkpoint_blocked
from support.models import User


@pytest.fixture
def fresh_database() -> Iterator[None]:
    database.set_default_database(database.Database(environ=os.environ))
    yield
    database.get_database().dispose()


def count(model: type, session: Session | None = None) -> int:
    with database.read_session() as s:
        return int((session or s).scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.usefixtures("fresh_database")
class TestConfiguration:
    def test_url_from_environment(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.delenv("STORAGE_DATABASE_URL", raising=False)
        monkeypatch.setenv("VENTION_STORAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'v.db'}")
        assert database.get_database().url.endswith("v.db")
        monkeypatch.setenv("STORAGE_DATABASE_URL", f"sqlite:///{tmp_path / 's.db'}")
        assert database.get_database().url.endswith("s.db")

    def test_a_database_reads_only_the_environment_it_is_given(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("STORAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
        assert database.Database().url == database.DEFAULT_DATABASE_URL
        given = {"VENTION_STORAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'given.db'}"}
        assert database.Database(environ=given).url.endswith("given.db")
        assert database.Database("sqlite://", environ=given).url == "sqlite://"

    def test_default_url(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("STORAGE_DATABASE_URL", raising=False)
        monkeypatch.delenv("VENTION_STORAGE_DATABASE_URL", raising=False)
        assert database.get_database().url == "sqlite:///./storage.db"

    def test_engine_is_one_object_and_url_is_fixed_after_first_use(self, tmp_path: Path) -> None:
        database.set_database_url(f"sqlite:///{tmp_path / 'a.db'}")
        engine = database.get_engine()
        assert database.get_engine() is engine
        database.set_database_url(f"sqlite:///{tmp_path / 'a.db'}")  # same URL: fine
        with pytest.raises(RuntimeError, match="before the database is first used"):
            database.set_database_url(f"sqlite:///{tmp_path / 'b.db'}")
        with pytest.raises(ConfigurationError):
            database.set_database_url(f"sqlite:///{tmp_path / 'b.db'}")

    def test_reload_gives_a_fresh_unconfigured_database(self, tmp_path: Path) -> None:
        database.set_database_url(f"sqlite:///{tmp_path / 'a.db'}")
        old = database.get_engine()
        importlib.reload(database)
        database.set_database_url(f"sqlite:///{tmp_path / 'b.db'}")
        assert database.get_engine() is not old
        old.dispose()

    def test_sqlite_pragmas(self, tmp_path: Path) -> None:
        database.set_database_url(f"sqlite:///{tmp_path / 'p.db'}")
        with database.get_engine().connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            # FULL: an acknowledged commit survives a power cut.
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2

    def test_the_sqlite_sync_mode_is_a_choice_made_before_first_use(self, tmp_path: Path) -> None:
        faster = database.Database(f"sqlite:///{tmp_path / 'n.db'}", sqlite_synchronous="normal")
        with faster.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
        with pytest.raises(ConfigurationError):
            faster.set_sqlite_synchronous("FULL")
        faster.dispose()
        with pytest.raises(ValueError, match="FULL"):
            database.Database(sqlite_synchronous="sometimes")

    @pytest.mark.parametrize(
        ("url", "extra"),
        [
            pytest.param("postgresql+pg8000://u@localhost/db", "postgres", id="postgresql"),
            pytest.param("mysql+mysqldb://u@localhost/db", "mysql", id="mysql"),
        ],
    )
    def test_a_missing_driver_says_what_to_install(self, url: str, extra: str) -> None:
        db = database.Database(url)
        with pytest.raises(MissingDependencyError, match=rf"machine-storage\[{extra}\]"):
            db.engine  # noqa: B018  (creating the engine imports the driver)

    def test_in_memory_sqlite_is_shared_across_sessions(self) -> None:
        from sqlmodel import SQLModel

        database.set_database_url("sqlite://")
        SQLModel.metadata.create_all(database.get_engine())
        ModelAccessor(User, "users").insert(User(name="x"))
        assert count(User) == 1


@pytest.mark.usefixtures("backend")
class TestTransactions:
    def test_commit_and_rollback(self) -> None:
        users = ModelAccessor(User, "users")
        with database.transaction():
            users.insert(User(name="a"))
            users.insert(User(name="b"))
        with pytest.raises(RuntimeError, match="boom"), database.transaction():
            users.insert(User(name="c"))
            raise RuntimeError("boom")
        assert sorted(u.name for u in users.all()) == ["a", "b"]
        assert count(AuditLog) == 2

    def test_nested_transaction_joins_the_outer_one(self) -> None:
        users = ModelAccessor(User, "users")
        with database.transaction() as outer:
            with database.transaction() as inner:
                assert inner is outer
                users.insert(User(name="a"))
            assert database.CURRENT_SESSION.get() is outer
        assert database.CURRENT_SESSION.get() is None
        with pytest.raises(ValueError), database.transaction():
            with database.transaction():
                users.insert(User(name="b"))
            raise ValueError("outer fails after the inner block")
        assert [u.name for u in users.all()] == ["a"]

    def test_caught_failure_inside_a_transaction_keeps_the_rest(self) -> None:
        users = ModelAccessor(User, "users")

        @users.before_insert()
        def refuse(session: Session, user: User) -> None:
            if user.name == "bad":
                raise ValueError("bad name")

        with database.transaction():
            users.insert(User(name="good"))
            with pytest.raises(ValueError):
                users.insert(User(name="bad"))
        assert [u.name for u in users.all()] == ["good"]
        assert count(AuditLog) == 1

    @pytest.mark.parametrize("savepoints", [True, False])
    def test_savepoints_can_be_left_out(self, savepoints: bool) -> None:
        """``savepoints=False``: accessor writes join the transaction as they are (two
        statements fewer each); an error still rolls everything back."""
        users = ModelAccessor(User, "users")
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        engine = database.get_engine()
        event.listen(engine, "before_cursor_execute", seen)
        try:
            with database.transaction(savepoints=savepoints):
                users.insert(User(name="a"))
                users.update(1, name="b")
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        uses_savepoints = any(s.upper().startswith("SAVEPOINT") for s in statements)
        assert uses_savepoints is savepoints
        assert [u.name for u in users.all()] == ["b"]
        with pytest.raises(RuntimeError), database.transaction(savepoints=False):
            users.insert(User(name="c"))
            raise RuntimeError("the route fails")
        assert [u.name for u in users.all()] == ["b"]
        assert count(AuditLog) == 2

    def test_use_session_commits_accessor_writes(self) -> None:
        users = ModelAccessor(User, "users")
        with database.use_session() as session:
            users.insert(User(name="a"))
            with database.use_session() as again:
                assert again is session
        own = database.get_database().session()
        with database.use_session(own) as session:
            assert session is own
            users.insert(User(name="b"))
        own.close()
        with pytest.raises(KeyError), database.use_session():
            users.insert(User(name="c"))
            raise KeyError("rolled back")
        assert sorted(u.name for u in users.all()) == ["a", "b"]

    def test_reads_inside_a_transaction_see_its_writes(self) -> None:
        users = ModelAccessor(User, "users")
        with database.transaction():
            users.insert(User(name="a"))
            assert users.count() == 1
            assert [u.name for u in users.all()] == ["a"]


@pytest.mark.slow
def test_concurrent_writers_on_one_sqlite_file(sqlite_db: Path) -> None:
    """8 threads x 500 audited writes: no "database is locked", no lost row or audit row."""
    users = ModelAccessor(User, "users")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(250):
                user = users.insert(User(name=f"w{worker}-{i}"), actor=f"w{worker}")
                users.update(user.id, actor=f"w{worker}", age=i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert users.count() == 8 * 250
    assert count(AuditLog) == 8 * 500
    assert users.count(users.where.age.is_(None)) == 0  # type: ignore[union-attr]


_OTHER_PROCESS = """
import sys
from storage import database
from storage.accessor import ModelAccessor
sys.path.insert(0, sys.argv[2])
from support.models import User
database.set_database_url(sys.argv[1])
users = ModelAccessor(User, "users")
for i in range(200):
    users.insert(User(name=f"p-{i}"), actor="process")
"""


@pytest.mark.slow
def test_writers_in_two_processes_share_one_sqlite_file(sqlite_db: Path) -> None:
    users = ModelAccessor(User, "users")
    tests_dir = str(Path(__file__).parents[1])
    other = subprocess.Popen(
        [sys.executable, "-c", _OTHER_PROCESS, f"sqlite:///{sqlite_db}", tests_dir]
    )
    for i in range(200):
        users.insert(User(name=f"t-{i}"), actor="thread")
    assert other.wait(timeout=120) == 0
    assert users.count() == 400
    assert count(AuditLog) == 400
    with database.get_engine().connect() as connection:
        assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"


# -- reads at once (Database.read_now) --------------------------------------------------------

_USER_BY_KEY = PreparedRead(
    select(User.id, User.name).where(User.id == bindparam("key"))  # type: ignore[arg-type]
)


def test_read_now_needs_the_connection_prepared(sqlite_db: Path) -> None:
    users = ModelAccessor(User, "users")
    users.insert(User(name="ada"))
    db = database.get_database()
    assert not db.reads_now
    with pytest.raises(DatabaseBusyError, match="not open"):
        db.read_now(_USER_BY_KEY, {"key": 1})
    assert db.prepare_read_now() and db.prepare_read_now()  # once; then nothing to do
    assert db.read_now(_USER_BY_KEY, {"key": 1}) == {"id": 1, "name": "ada"}
    assert db.read_now(_USER_BY_KEY, {"key": 2}) is None


def test_read_now_sees_commits_of_other_connections(sqlite_db: Path) -> None:
    users = ModelAccessor(User, "users")
    db = database.get_database()
    db.prepare_read_now()
    assert db.read_now(_USER_BY_KEY, {"key": 1}) is None
    users.insert(User(name="ada"))
    with database.transaction():
        users.update(1, name="grace")
        assert db.read_now(_USER_BY_KEY, {"key": 1}) == {"id": 1, "name": "ada"}  # not yet
    assert db.read_now(_USER_BY_KEY, {"key": 1}) == {"id": 1, "name": "grace"}


def test_read_now_holds_no_lock(sqlite_db: Path) -> None:
    """A read at once leaves no transaction open: a checkpoint can still truncate the WAL."""
    users = ModelAccessor(User, "users")
    users.insert(User(name="ada"))
    db = database.get_database()
    db.prepare_read_now()
    db.read_now(_USER_BY_KEY, {"key": 1})
    assert not wal_checkpoint_blocked(sqlite_db)
    assert Path(f"{sqlite_db}-wal").stat().st_size == 0


def test_dispose_closes_the_connection_for_reads_at_once(sqlite_db: Path) -> None:
    db = database.get_database()
    db.prepare_read_now()
    connection = db._now_connection
    db.dispose()
    assert not db.reads_now
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        connection.execute("SELECT 1")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite://", id="sqlite-memory"),
        pytest.param("postgresql", id="postgresql"),
        pytest.param("mariadb", id="mariadb"),
    ],
)
def test_reads_at_once_only_on_sqlite_files(url: str) -> None:
    database.set_default_database(database.Database())
    database.set_database_url(server_url(url) if url in SERVER_URLS else url)
    db = database.get_database()
    try:
        assert db.prepare_read_now() is False
        with pytest.raises(DatabaseBusyError):
            db.read_now(_USER_BY_KEY, {"key": 1})
    finally:
        db.dispose()


def _bounded(path: Path) -> database.Database:
    db = database.Database(f"sqlite:///{path}", busy_timeout=0.5)
    SQLModel.metadata.create_all(db.engine)
    return db


def test_a_writer_of_this_process_waits_at_most_the_busy_timeout(tmp_path: Path) -> None:
    db = _bounded(tmp_path / "bounded.db")
    with a_long_write(db):
        started = time.monotonic()
        with pytest.raises(DatabaseBusyError, match="held the database"), db.transaction():
            pass
        waited = time.monotonic() - started
    assert 0.4 < waited < 5
    with db.transaction():  # free again
        pass
    db.dispose()


def test_a_lock_of_another_process_is_a_busy_error_not_a_driver_error(tmp_path: Path) -> None:
    db = _bounded(tmp_path / "locked.db")
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseBusyError, match="busy"), db.transaction() as session:
            session.connection()  # BEGIN IMMEDIATE: waits 0.5 s for the other process
    finally:
        other.execute("ROLLBACK")
        other.close()
        db.dispose()
