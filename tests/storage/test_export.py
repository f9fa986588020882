"""CSV export and import: the cell conventions, the zip, round trips and refusals."""

from __future__ import annotations

import csv
import io
import re
import tempfile
import tracemalloc
import uuid
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, delete
from sqlmodel import SQLModel

from storage import database, export
from storage._verification import verify_chain
from storage.accessor import ModelAccessor
from storage.csvformat import NULL, ColumnCodec
from storage.errors import ConflictError, IntegrityConflictError, ValidationError
from storage.export import open_export, write_export
from storage.importer import import_upload, importable
from support.dataset import seed, table_counts, table_rows, wal_checkpoint_blocked
from support.models import Color, Gadget, Sample, User


def column(model: type[SQLModel], name: str) -> Column[Any]:
    return model.__table__.c[name]  # type: ignore[attr-defined, no-any-return]


# -- the cell conventions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "name", "value", "cell"),
    [
        pytest.param(User, "name", "plain", "plain", id="text"),
        pytest.param(User, "email", "", "", id="empty-string"),
        pytest.param(Gadget, "owner_id", None, NULL, id="null-int"),
        pytest.param(User, "name", "=cmd", "'=cmd", id="formula-equals"),
        pytest.param(User, "name", "+1", "'+1", id="formula-plus"),
        pytest.param(User, "name", "-x", "'-x", id="formula-minus"),
        pytest.param(User, "name", "@sum", "'@sum", id="formula-at"),
        pytest.param(User, "name", "\tx", "'\tx", id="leading-tab"),
        pytest.param(User, "name", "'quoted", "''quoted", id="leading-apostrophe"),
        pytest.param(User, "name", "\\N", "'\\N", id="text-that-looks-like-null"),
        pytest.param(User, "age", -3, "-3", id="negative-int-not-prefixed"),
        pytest.param(Sample, "ratio", -0.25, "-0.25", id="negative-float"),
        pytest.param(Sample, "weight", Decimal("-12.345"), "-12.345", id="decimal"),
        pytest.param(Sample, "active", False, "false", id="bool"),
        pytest.param(Sample, "color", Color.GREEN, "GREEN", id="enum"),
        pytest.param(Sample, "day", date(2026, 1, 2), "2026-01-02", id="date"),
        pytest.param(
            Sample,
            "taken_at",
            datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC),
            "2026-01-02T03:04:05.000600+00:00",
            id="datetime",
        ),
        pytest.param(
            Sample,
            "ref",
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "12345678-1234-5678-1234-567812345678",
            id="uuid",
        ),
        pytest.param(
            Sample, "payload", {"a": [1, None, "ü"]}, '{"a": [1, null, "ü"]}', id="json-object"
        ),
        pytest.param(Sample, "payload", -1, "'-1", id="json-number-prefixed"),
        pytest.param(Sample, "payload", None, NULL, id="json-null"),
    ],
)
def test_cells_round_trip(model: type[SQLModel], name: str, value: Any, cell: str) -> None:
    codec = ColumnCodec.for_column(column(model, name))
    assert codec.encode(value) == cell
    assert codec.decode(cell) == value


@pytest.mark.parametrize(
    ("model", "name", "cell", "value"),
    [
        pytest.param(User, "age", "", None, id="empty-number-is-null"),
        pytest.param(User, "email", "", "", id="empty-text-is-empty-string"),
        pytest.param(
            Sample,
            "taken_at",
            "2026-01-02T03:04:05",
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            id="naive-datetime-is-utc",
        ),
        pytest.param(
            Sample,
            "taken_at",
            "2026-01-02T05:04:05+02:00",
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            id="offset-datetime",
        ),
        pytest.param(Sample, "color", "green", Color.GREEN, id="enum-by-value"),
        pytest.param(Sample, "active", "TRUE", True, id="bool-any-case"),
        pytest.param(User, "id", NULL, None, id="autoincrement-key-may-be-null"),
    ],
)
def test_cells_read_leniently(model: type[SQLModel], name: str, cell: str, value: Any) -> None:
    decoded = ColumnCodec.for_column(column(model, name)).decode(cell)
    assert decoded == value
    if isinstance(value, datetime):
        assert decoded.utcoffset() == timedelta(0)


def test_aware_datetime_for_a_naive_column_is_converted_to_utc() -> None:
    from sqlalchemy import DateTime, MetaData, Table

    naive = Table("naive_example", MetaData(), Column("at", DateTime()))
    codec = ColumnCodec.for_column(naive.c.at)
    assert codec.decode("2026-01-02T05:04:05+02:00") == datetime(2026, 1, 2, 3, 4, 5)
    assert codec.encode(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)).startswith("2026")


@pytest.mark.parametrize(
    ("model", "name", "cell", "message"),
    [
        pytest.param(User, "age", "abc", "is not an integer", id="not-an-integer"),
        pytest.param(User, "age", "1.5", "is not an integer", id="fraction-in-integer"),
        pytest.param(User, "age", "99999999999", "out of range", id="integer-overflow"),
        pytest.param(User, "name", "x" * 101, "longer than 100", id="text-too-long"),
        pytest.param(User, "name", NULL, "required", id="null-in-not-null"),
        pytest.param(Sample, "taken_at", "yesterday", "ISO 8601 datetime", id="bad-datetime"),
        pytest.param(Sample, "day", "2026-13-01", "ISO 8601 date", id="bad-date"),
        pytest.param(Sample, "payload", "{oops", "not valid JSON", id="bad-json"),
        pytest.param(Sample, "color", "BLUE", "is not one of RED, GREEN", id="bad-enum"),
        pytest.param(Sample, "active", "maybe", "not a boolean", id="bad-bool"),
        pytest.param(
            Sample, "weight", "1e20", "does not fit NUMERIC(10, 3)", id="decimal-overflow"
        ),
        pytest.param(Sample, "weight", "NaN", "finite", id="decimal-nan"),
        pytest.param(Sample, "weight", "ten", "not a decimal", id="bad-decimal"),
        pytest.param(Sample, "ratio", "half", "not a number", id="bad-float"),
        pytest.param(Sample, "ref", "not-a-uuid", "not a UUID", id="bad-uuid"),
    ],
)
def test_bad_cells_are_refused(model: type[SQLModel], name: str, cell: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ColumnCodec.for_column(column(model, name)).decode(cell)


# -- export -------------------------------------------------------------------------------------


def read_zip(data: bytes) -> dict[str, list[list[str]]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {
            name: list(csv.reader(io.StringIO(archive.read(name).decode("utf-8"))))
            for name in archive.namelist()
        }


def export_bytes() -> bytes:
    with open_export() as file:
        return file.read()


def test_export_has_one_csv_per_table_including_the_audit_log(backend: str) -> None:
    seed()
    files = read_zip(export_bytes())
    assert set(files) == {f"{table.name}.csv" for table in SQLModel.metadata.sorted_tables}
    counts = table_counts()
    for name, rows in files.items():
        table = SQLModel.metadata.tables[name.removesuffix(".csv")]
        assert rows[0] == [c.name for c in table.columns]
        assert len(rows) - 1 == counts[table.name]
    users = files["user.csv"]
    assert ["'=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"] in [row[1:3] for row in users]
    assert any(row[3] == NULL for row in users[1:]), "a NULL age is written as \\N"


@pytest.mark.slow
def test_export_is_handed_out_while_it_is_written(backend: str) -> None:
    users = ModelAccessor(User, "users", enable_auditing=False)
    users.insert_many([User(name=f"user {n}", email=f"{n}@example.com") for n in range(20_000)])
    pieces = export.iter_export(chunk_bytes=4096)
    first = next(pieces)  # deflate hands out its output in blocks of about 16-20 kB
    assert first.startswith(b"PK\x03\x04") and len(first) >= 4096
    rest = list(pieces)
    assert len(rest) >= 2
    streamed = read_zip(first + b"".join(rest))
    assert streamed == read_zip(export_bytes())
    assert len(streamed["user.csv"]) == 20_001


def test_an_abandoned_export_ends_its_read_transaction(sqlite_db: Path) -> None:
    """A client that hangs up mid-download: closing the generator ends the read, so the
    WAL can be checkpointed again."""
    users = ModelAccessor(User, "users", enable_auditing=False)
    users.insert_many([User(name=f"user {n}") for n in range(5_000)])
    pieces = export.iter_export(chunk_bytes=1024)
    next(pieces)
    pieces.close()
    users.insert(User(name="after"))
    assert not wal_checkpoint_blocked(sqlite_db)


@pytest.mark.slow
def test_export_memory_does_not_grow_with_table_size(sqlite_db: object) -> None:
    users = ModelAccessor(User, "users", enable_auditing=False)

    def peak_with(rows: int) -> int:
        users.insert_many([User(name=f"user {n}", email=f"{n}@example.com") for n in range(rows)])
        tracemalloc.start()
        try:
            with tempfile.TemporaryFile() as target:
                write_export(target)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small = peak_with(2_000)
    large = peak_with(18_000)  # 20,000 rows in all, ten times as many
    assert large < small * 1.5 + 512 * 1024, (small, large)


# -- import -------------------------------------------------------------------------------------


def wipe_tables() -> None:
    with database.transaction() as session:
        for table in reversed(SQLModel.metadata.sorted_tables):
            session.execute(delete(table))


def test_export_import_round_trip_is_lossless(backend: str) -> None:
    seed()
    before = table_rows()
    data = export_bytes()
    wipe_tables()
    summary = import_upload(io.BytesIO(data), actor="tester")
    assert summary.tables["user"] == len(before["user"])
    after = table_rows()
    audit = after.pop("auditlog")
    before.pop("auditlog")
    after.pop("auditlog_head"), before.pop("auditlog_head")  # moves with the audit log
    assert after == before  # every data table as it was
    # The audit log is exported but never imported: it records the import instead.
    assert "auditlog" in summary.skipped and "auditlog" not in summary.tables
    tables = [table for table in SQLModel.metadata.sorted_tables if importable(table)]
    assert {(row[2], row[3], row[4], row[5]) for row in audit} == {
        ("database", table.name, "import", "tester") for table in tables
    }
    assert verify_chain().ok  # the import's audit rows are chained like any others


def test_the_audit_log_cannot_be_imported(backend: str) -> None:
    seed()
    before = table_rows()
    forged = single_csv(
        ["id", "timestamp", "component", "record_id", "operation", "actor"],
        ["1", "2020-01-01T00:00:00", "users", "1", "create", "nobody"],
    )
    with pytest.raises(ValidationError, match="auditlog cannot be imported"):
        import_upload(forged, table="auditlog", mode="replace", actor="tester")
    assert table_rows() == before


def test_a_table_twice_in_an_archive_is_refused(backend: str) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("user.csv", "name\nAda\n")
        zipped.writestr("again/user.csv", "name\nBob\n")
    with pytest.raises(ValidationError, match="user.csv twice"):
        import_upload(io.BytesIO(archive.getvalue()), actor="tester")


def test_a_huge_unknown_column_name_is_quoted_short(backend: str) -> None:
    with pytest.raises(ValidationError) as refused:
        import_upload(single_csv(["x" * 100_000], ["1"]), table="user", actor="tester")
    assert len(str(refused.value)) < 200


def test_rows_inserted_after_an_import_get_fresh_keys(backend: str) -> None:
    # A fresh database: on PostgreSQL the sequence still stands at 1 unless the import moved it.
    data = single_csv(["id", "name"], ["1", "Ada"], ["2", "Bob"], ["3", "Cy"])
    import_upload(data, table="user", actor="tester")
    created = ModelAccessor(User, "users").insert(User(name="after import"))
    assert created.id == 4


def single_csv(*rows: list[str]) -> io.BytesIO:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return io.BytesIO(text.getvalue().encode("utf-8"))


def test_single_csv_with_generated_keys(backend: str) -> None:
    data = single_csv(["id", "name", "email", "age"], [NULL, "Ada", "", ""], ["", "=Bob", "", "7"])
    summary = import_upload(data, table="user", actor="tester")
    assert summary.tables == {"user": 2}
    rows = [(u.name, u.email, u.age) for u in ModelAccessor(User, "users").all()]
    assert rows == [("Ada", "", None), ("=Bob", "", 7)]


def test_modes(backend: str) -> None:
    users = ModelAccessor(User, "users")
    ada = users.insert(User(name="Ada", email="ada@example.com", age=36))
    header = ["id", "name", "age"]
    with pytest.raises(ConflictError, match=rf"table user, row 1: a row with id={ada.id} already"):
        import_upload(single_csv(header, [str(ada.id), "Ada L.", "37"]), table="user", actor="t")
    import_upload(
        single_csv(header, [str(ada.id), "Ada L.", "37"], ["100", "Bob", NULL]),
        table="user",
        mode="upsert",
        actor="t",
    )
    rows = [(u.id, u.name, u.email, u.age) for u in users.all()]
    assert rows == [(ada.id, "Ada L.", "ada@example.com", 37), (100, "Bob", "", None)]
    import_upload(single_csv(header, ["5", "Cy", "1"]), table="user", mode="replace", actor="t")
    assert [(u.id, u.name) for u in users.all(include_deleted=True)] == [(5, "Cy")]


def test_import_tells_restore_listeners(backend: str, restored_calls: list[str]) -> None:
    import_upload(single_csv(["name"], ["Ada"]), table="user", actor="t")
    assert restored_calls == ["restored"]


def test_dry_run_changes_nothing_and_tells_no_one(backend: str, restored_calls: list[str]) -> None:
    seed()
    before = table_rows()
    summary = import_upload(io.BytesIO(export_bytes()), mode="replace", dry_run=True, actor="t")
    assert summary.dry_run and summary.tables["user"] == len(before["user"])
    assert table_rows() == before
    assert restored_calls == []


@pytest.mark.parametrize(
    ("rows", "table", "message"),
    [
        pytest.param(
            [["name", "age"], ["Ada", "36"], ["Bob", "old"]],
            "user",
            r"table user, row 2, column age: 'old' is not an integer",
            id="bad-integer",
        ),
        pytest.param(
            [["name", "nickname"], ["Ada", "A"]],
            "user",
            r"table user: unknown column 'nickname'",
            id="unknown-column",
        ),
        pytest.param(
            [["email"], ["a@b.c"]],
            "user",
            r"table user: required column 'name' is missing",
            id="missing-required-column",
        ),
        pytest.param(
            [["name", "age"], ["Ada", "1", "extra"]],
            "user",
            r"table user, row 1: 3 cells where the header has 2",
            id="wrong-cell-count",
        ),
        pytest.param(
            [["name", "age"], [NULL, "1"]],
            "user",
            r"table user, row 1, column name: a value is required",
            id="null-in-required",
        ),
        pytest.param(
            [["id", "taken_at", "day", "weight"], [str(uuid.uuid4()), "soon", "2026-01-01", "1"]],
            "sample",
            r"table sample, row 1, column taken_at: 'soon' is not an ISO 8601 datetime",
            id="bad-datetime",
        ),
        pytest.param([["x"]], "nope", r"unknown table 'nope'", id="unknown-table"),
        pytest.param([], "user", r"table user: the CSV is empty", id="empty-file"),
    ],
)
def test_bad_csv_is_refused_and_nothing_changes(
    backend: str, rows: list[list[str]], table: str, message: str
) -> None:
    seed()
    before = table_rows()
    with pytest.raises(ValidationError, match=message):
        import_upload(single_csv(*rows), table=table, actor="t")
    assert table_rows() == before


def test_bad_row_after_good_batches_rolls_everything_back(backend: str) -> None:
    rows = [["name"]] + [[f"user {n}"] for n in range(1_500)] + [["x" * 101]]
    with pytest.raises(ValidationError, match="table user, row 1501, column name"):
        import_upload(single_csv(*rows), table="user", actor="t")
    assert table_counts()["user"] == 0


def test_not_utf8_is_refused(backend: str) -> None:
    with pytest.raises(ValidationError, match="not UTF-8"):
        import_upload(io.BytesIO(b"name\n\xff\xfe\n"), table="user", actor="t")


def test_single_csv_needs_a_table(backend: str) -> None:
    with pytest.raises(ValidationError, match="needs the table query parameter"):
        import_upload(single_csv(["name"], ["Ada"]), actor="t")


def test_foreign_key_violation_is_a_conflict_and_nothing_changes(backend: str) -> None:
    seed()
    before = table_rows()
    data = single_csv(["serial", "owner_id"], ["new-1", "1"], ["new-2", "999999"])
    with pytest.raises(IntegrityConflictError, match="table gadget, rows 1-2: foreign key"):
        import_upload(data, table="gadget", actor="t")
    assert table_rows() == before


def test_zip_can_be_restricted_to_one_table(backend: str) -> None:
    seed()
    data = export_bytes()
    wipe_tables()
    summary = import_upload(io.BytesIO(data), table="user", actor="t")
    assert summary.tables == {"user": len(read_zip(data)["user.csv"]) - 1}
    assert table_counts()["gadget"] == 0


def kinds_table() -> Any:
    from sqlalchemy import (
        BigInteger,
        Enum,
        Integer,
        Interval,
        LargeBinary,
        MetaData,
        SmallInteger,
        Table,
        Time,
        Uuid,
    )

    return Table(
        "kinds_example",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("small", SmallInteger),
        Column("big", BigInteger),
        Column("span", Interval),
        Column("blob", LargeBinary),
        Column("at", Time),
        Column("mood", Enum("happy", "-sad", name="mood")),
        Column("key", Uuid(as_uuid=False)),
    )


@pytest.mark.parametrize(
    ("name", "value", "cell"),
    [
        pytest.param("big", 2**40, "1099511627776", id="big-integer"),
        pytest.param("span", timedelta(minutes=1, microseconds=5), "60.000005", id="interval"),
        pytest.param("blob", b"\x00\xff=", "AP89", id="binary-base64"),
        pytest.param("at", datetime(2026, 1, 1, 7, 30).time(), "07:30:00", id="time"),
        pytest.param("mood", "-sad", "'-sad", id="string-enum-prefixed"),
        pytest.param(
            "key",
            "12345678-1234-5678-1234-567812345678",
            "12345678-1234-5678-1234-567812345678",
            id="uuid-as-text",
        ),
    ],
)
def test_other_column_kinds_round_trip(name: str, value: Any, cell: str) -> None:
    codec = ColumnCodec.for_column(kinds_table().c[name])
    assert codec.encode(value) == cell
    assert codec.decode(cell) == value


@pytest.mark.parametrize(
    ("name", "cell", "message"),
    [
        pytest.param("small", "40000", "out of range for a 16-bit integer", id="small-overflow"),
        pytest.param("big", str(2**63), "out of range for a 64-bit integer", id="big-overflow"),
        pytest.param("span", "1e30", "out of range", id="interval-overflow"),
        pytest.param("blob", "not base64!", "not valid base64", id="bad-base64"),
        pytest.param("at", "25:00", "ISO 8601 time", id="bad-time"),
        pytest.param("mood", "angry", "is not one of happy, -sad", id="bad-string-enum"),
    ],
)
def test_other_column_kinds_refuse_bad_cells(name: str, cell: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ColumnCodec.for_column(kinds_table().c[name]).decode(cell)
