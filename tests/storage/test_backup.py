"""Snapshots and restores: consistent files, atomic restores, refusals that change nothing."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from sqlmodel import SQLModel, select

from storage import database
from storage._verification import verify_chain
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.backup import open_snapshot, write_snapshot
from storage.bootstrap import prepare_database
from storage.errors import PayloadTooLargeError, RestoreError, StorageError
from storage.restore import restore_upload
from support.dataset import seed, table_counts, table_rows
from support.models import Gadget, User


def snapshot_bytes() -> bytes:
    with open_snapshot() as file:
        return file.read()


def change_everything() -> None:
    users = ModelAccessor(User, "users")
    users.insert(User(name="written after the backup"), actor="later")
    first = users.all()[0]
    users.update(first.id, name="renamed after the backup", actor="later")
    ModelAccessor(Gadget, "gadgets").delete_many([g.id for g in ModelAccessor(Gadget, "g").all()])


def restore_audit_rows() -> list[AuditLog]:
    with database.read_session() as session:
        statement = select(AuditLog).where(AuditLog.operation == "restore")
        return list(session.exec(statement).all())


# -- snapshots ----------------------------------------------------------------------------------


def test_snapshot_is_a_sound_standalone_sqlite_file(backend: str, tmp_path: Path) -> None:
    seed()
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "snapshot.sqlite"
    write_snapshot(path)
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        counts = {
            table.name: connection.execute(f'SELECT COUNT(*) FROM "{table.name}"').fetchone()[0]
            for table in SQLModel.metadata.sorted_tables
        }
    finally:
        connection.close()
    assert counts == table_counts()
    assert list((tmp_path / "out").iterdir()) == [path], "the snapshot must be one file"


def test_snapshot_does_not_close_the_apps_connections(sqlite_db: Path) -> None:
    users = ModelAccessor(User, "users")
    users.insert(User(name="Ada"))
    with database.transaction() as session:
        session.add(User(name="in flight"))
        session.flush()
        snapshot_bytes()  # another connection, while this transaction is open
    assert [u.name for u in users.all()] == ["Ada", "in flight"]


# -- restores -----------------------------------------------------------------------------------


def test_restore_brings_back_the_snapshot_and_records_it(
    backend: str, restored_calls: list[str]
) -> None:
    seed()
    before = table_rows()
    data = snapshot_bytes()
    change_everything()
    assert table_rows() != before
    summary = restore_upload(io.BytesIO(data), actor="operator")
    assert summary.restored and not summary.dry_run and summary.bytes == len(data)
    assert summary.tables == {name: len(rows) for name, rows in before.items()}
    after = table_rows()
    audit, expected_audit = after.pop("auditlog"), before.pop("auditlog")
    after.pop("auditlog_head"), before.pop("auditlog_head")
    assert after == before
    assert audit[: len(expected_audit)] == expected_audit
    assert verify_chain().ok  # the restore's own audit row links to the backup's chain
    [record] = restore_audit_rows()
    assert (record.component, record.record_id) == ("database", "database")
    assert record.actor == "operator"
    assert record.after == {"bytes": len(data), "tables": summary.tables}
    assert restored_calls == ["restored"]
    # The database keeps working: new rows get fresh keys.
    created = ModelAccessor(User, "users").insert(User(name="after restore"))
    assert created.id is not None and created.id > max(row[0] for row in before["user"])


def test_dry_run_checks_and_changes_nothing(backend: str, restored_calls: list[str]) -> None:
    seed()
    data = snapshot_bytes()
    change_everything()
    before = table_rows()
    summary = restore_upload(io.BytesIO(data), actor="operator", dry_run=True)
    assert summary.dry_run and not summary.restored
    assert table_rows() == before
    assert restored_calls == []


def older_version(data: bytes) -> bytes:
    """``data`` as an older version of the app would have written it: no audit chain (no hash
    columns, no head table) and no ``user.email`` column yet."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "old.sqlite"
        path.write_bytes(data)
        with closing(sqlite3.connect(path)) as connection:
            connection.execute("DROP TABLE auditlog_head")
            for table, column in (("auditlog", "hash"), ("auditlog", "prev_hash"),
                                  ("user", "email")):  # fmt: skip
                for (index,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                    "AND sql LIKE ?",
                    (table, f"%{column}%"),
                ).fetchall():
                    connection.execute(f'DROP INDEX "{index}"')
                connection.execute(f'ALTER TABLE "{table}" DROP COLUMN {column}')
            connection.commit()
        return path.read_bytes()


def test_a_backup_of_an_older_version_is_brought_up_to_the_apps_tables(
    backend: str, restored_calls: list[str]
) -> None:
    """Restoring last month's backup after an upgrade: what the backup lacks and auto-migration
    would add (the audit chain's columns and head table, a new nullable column) is added to
    the uploaded copy first; the dry run says so, the restore brings the data back."""
    seed()
    before = table_rows()
    data = older_version(snapshot_bytes())
    change_everything()
    dry = restore_upload(io.BytesIO(data), actor="operator", dry_run=True)
    assert dry.dry_run and not dry.restored and restored_calls == []
    assert {
        "add column auditlog.hash",
        "add column auditlog.prev_hash",
        "create table auditlog_head",
        "add column user.email",
    } <= set(dry.upgraded)
    summary = restore_upload(io.BytesIO(data), actor="operator")
    assert summary.restored and summary.upgraded == dry.upgraded
    users = ModelAccessor(User, "users").all(include_deleted=True)
    assert sorted(u.name for u in users) == sorted(row[1] for row in before["user"])
    assert {u.email for u in users} == {""}  # the new column's default
    report = verify_chain()  # the backup's rows are from before the chain; it starts after
    assert report.ok and report.unchained >= len(before["auditlog"])
    assert restored_calls == ["restored"]


def corrupt(data: bytes) -> bytes:
    # Scribble over the second page (a table's b-tree page) but keep the size.
    return data[:4096] + b"\x07" * 4096 + data[8192:]


def foreign_schema() -> bytes:
    with closing(sqlite3.connect(":memory:")) as connection:
        connection.execute("CREATE TABLE inventory (id INTEGER PRIMARY KEY, item TEXT)")
        connection.execute("INSERT INTO inventory (item) VALUES ('bolt')")
        return connection.serialize()


def edited(*statements: str) -> Callable[[bytes], bytes]:
    """The good snapshot with ``statements`` run on it."""

    def edit(data: bytes) -> bytes:
        with closing(sqlite3.connect(":memory:")) as connection:
            connection.deserialize(data)
            for statement in statements:
                connection.execute(statement)
            connection.commit()
            return connection.serialize()

    return edit


def missing_column(data: bytes) -> bytes:
    """Without a required column: no additive step can bring it (an optional one can, see
    test_a_backup_of_an_older_version_is_brought_up_to_the_apps_tables)."""
    with closing(sqlite3.connect(":memory:")) as connection:
        connection.deserialize(data)
        connection.execute('ALTER TABLE "user" DROP COLUMN name')
        return connection.serialize()


BAD_FILES: list[object] = [
    pytest.param(lambda good: b"", "no SQLite header", id="empty"),
    pytest.param(lambda good: b"id,name\n1,Ada\n" * 50, "no SQLite header", id="csv-not-sqlite"),
    pytest.param(lambda good: good[: len(good) // 2], "truncated", id="truncated"),
    pytest.param(lambda good: good[:5000], "truncated", id="truncated-mid-page"),
    pytest.param(corrupt, "corrupt|cannot be read", id="corrupt"),
    pytest.param(
        lambda good: foreign_schema(), "does not define: table inventory", id="foreign-schema"
    ),
    pytest.param(missing_column, r"missing columns: user\.name\)", id="missing-column"),
    # Code in the file: it would run during the restore and stay in the live database.
    pytest.param(
        edited(
            "CREATE TRIGGER hide AFTER INSERT ON auditlog BEGIN "
            "DELETE FROM auditlog WHERE id = new.id; END"
        ),
        "does not define: trigger hide",
        id="trigger",
    ),
    pytest.param(edited('CREATE VIEW v AS SELECT * FROM "user"'), "view v", id="view"),
    pytest.param(edited("CREATE TABLE spy (x)"), "table spy", id="extra-table"),
    pytest.param(edited('CREATE INDEX ix_odd ON "user" (lower(name))'), "index ix_odd", id="index"),
    pytest.param(
        edited(
            'ALTER TABLE "user" RENAME TO user_old',
            'CREATE TABLE "user" (id TEXT, name TEXT, email TEXT, age TEXT, deleted_at TEXT)',
            'INSERT INTO "user" SELECT * FROM user_old',
            "DROP TABLE user_old",
        ),
        r"user\.id \(not part of the primary key\).*user\.age \(text where the app has integer",
        id="wrong-types-no-key",
    ),
    pytest.param(
        edited("UPDATE \"user\" SET age = 'old'"),
        r"user\.age holds values that are not integer",
        id="text-in-integer",
    ),
    pytest.param(
        edited("UPDATE auditlog SET after = '{not json'"),
        r"auditlog\.after holds invalid JSON",
        id="invalid-json",
    ),
]


@pytest.mark.parametrize(("make", "message"), BAD_FILES)
def test_bad_files_are_refused_and_nothing_changes(
    backend: str, make: Callable[[bytes], bytes], message: str, restored_calls: list[str]
) -> None:
    seed()
    bad = make(snapshot_bytes())
    change_everything()
    before = table_rows()
    with pytest.raises(RestoreError, match=message):
        restore_upload(io.BytesIO(bad), actor="operator")
    assert table_rows() == before
    assert restored_calls == []


def test_a_corrupt_file_is_refused_also_without_the_integrity_check(backend: str) -> None:
    seed()
    bad = corrupt(snapshot_bytes())
    before = table_rows()
    with pytest.raises(RestoreError, match="corrupt|cannot be read"):
        restore_upload(io.BytesIO(bad), actor="operator", integrity_check=False)
    assert table_rows() == before


def test_oversize_file_is_refused(backend: str) -> None:
    seed()
    data = snapshot_bytes()
    before = table_rows()
    with pytest.raises(PayloadTooLargeError, match=f"limit of {len(data) - 1} bytes"):
        restore_upload(io.BytesIO(data), actor="operator", max_bytes=len(data) - 1)
    assert table_rows() == before


def test_a_different_page_size_and_wal_mode_are_fine(sqlite_db: Path, tmp_path: Path) -> None:
    seed()
    expected = table_rows()
    path = tmp_path / "small-pages.sqlite"
    write_snapshot(path)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA page_size = 1024")
    connection.execute("VACUUM")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.close()
    change_everything()
    with path.open("rb") as file:
        restore_upload(file, actor="operator")
    after = table_rows()
    after.pop("auditlog"), expected.pop("auditlog")
    after.pop("auditlog_head"), expected.pop("auditlog_head")
    assert after == expected


def sqlite_integrity(path: Path) -> list[tuple[str]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()


def test_restore_while_writers_run(sqlite_db: Path) -> None:
    seed()
    data = snapshot_bytes()
    kept = {row[0] for row in table_rows()["user"]}
    users = ModelAccessor(User, "users")
    stop = threading.Event()
    errors: list[BaseException] = []
    written: list[int] = []

    def write(worker: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                written.append(users.insert(User(name=f"w{worker}-{n}"), actor="writer").id or 0)
                users.all(limit=5, order_desc=True)
            except StorageError as exc:  # a clean refusal is allowed; anything else is a bug
                errors.append(exc)
            except BaseException as exc:
                errors.append(exc)
                raise
            n += 1

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            time.sleep(0.2)
            summary = restore_upload(io.BytesIO(data), actor="operator")
            assert summary.restored
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == [], "writers queue behind the restore instead of failing"
    assert len(written) > 10, "the writers made progress"
    assert sqlite_integrity(sqlite_db) == [("ok",)]
    remaining = {row[0] for row in table_rows()["user"]}
    assert kept <= remaining, "every row of the snapshot is there"
    assert len(restore_audit_rows()) >= 1


READER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1])
for line in sys.stdin:
    count = connection.execute('SELECT COUNT(*) FROM "user"').fetchone()[0]
    names = [r[0] for r in connection.execute('SELECT name FROM "user" ORDER BY id')]
    print(count, names[-1] if names else "", flush=True)
"""


def test_another_process_sees_the_restore(sqlite_db: Path) -> None:
    users = ModelAccessor(User, "users")
    users.insert(User(name="Ada"))
    data = snapshot_bytes()
    users.insert(User(name="after the backup"))
    inode = sqlite_db.stat().st_ino
    # A second process keeps one plain sqlite3 connection open across the restore.
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(sqlite_db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdin is not None and reader.stdout is not None
    try:
        reader.stdin.write("read\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["2", "after", "the", "backup"]
        restore_upload(io.BytesIO(data), actor="operator")
        reader.stdin.write("read\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["1", "Ada"]
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
        reader.stdout.close()
    fresh = subprocess.run(
        [sys.executable, "-c", READER, str(sqlite_db)],
        input="read\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert fresh.stdout.split() == ["1", "Ada"]
    assert sqlite_db.stat().st_ino == inode, "restored in place, not by replacing the file"


def test_unreadable_value_in_the_snapshot(backend: str) -> None:
    # Every backend checks the values before touching the live database: SQLite would
    # otherwise take the file as it is, and every later read of the row would fail.
    seed()
    connection = sqlite3.connect(":memory:")
    connection.deserialize(snapshot_bytes())
    connection.execute("UPDATE sample SET payload = '{not json'")
    connection.commit()
    bad = connection.serialize()
    connection.close()
    before = table_rows()
    with pytest.raises(RestoreError, match=r"sample\.payload holds invalid JSON"):
        restore_upload(io.BytesIO(bad), actor="operator")
    assert table_rows() == before


def test_copies_left_by_a_restore_that_died_are_removed_at_startup(
    sqlite_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f"storage-restore-{gone.stdout.strip()}-abc"
    running = tmp_path / f"storage-restore-{os.getpid()}-def"
    unrelated = tmp_path / "storage-restore-notes"
    for folder in (dead, running, unrelated):
        folder.mkdir()
        (folder / "upload.sqlite").write_bytes(b"x" * 1024)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    prepare_database()
    assert not dead.exists()
    assert running.exists() and unrelated.exists()
