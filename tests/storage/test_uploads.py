"""Imports within limits: zip bombs, giant lines and records, too many rows or bytes are
refused while the data streams in, with bounded memory, and the database stays as it was."""

from __future__ import annotations

import csv
import io
import json
import threading
import tracemalloc
import uuid
import zipfile
from pathlib import Path

import pytest

from storage.errors import OperationCancelledError, PayloadTooLargeError, ValidationError
from storage.importer import import_upload
from storage.uploads import ImportLimits
from support.dataset import seed, table_rows


def zipped(name: str, text: str) -> io.BytesIO:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as files:
        files.writestr(name, text)
    archive.seek(0)
    return archive


def csv_of(*lines: str) -> io.BytesIO:
    return io.BytesIO(("\n".join(lines) + "\n").encode())


@pytest.mark.parametrize(
    ("upload", "limits", "error", "message"),
    [
        pytest.param(
            lambda: zipped("user.csv", "name\n" + "Ada\n" * 3_000_000),
            ImportLimits(),
            ValidationError,
            "expands .* times, over the limit of 200",
            id="zip-bomb",
        ),
        pytest.param(
            lambda: zipped("user.csv", "name\n" + "Ada\n" * 1000),
            ImportLimits(max_bytes=1000),
            PayloadTooLargeError,
            "once expanded, over the import limit",
            id="member-over-max-bytes",
        ),
        pytest.param(
            lambda: csv_of("name", *["Ada"] * 1000),
            ImportLimits(max_bytes=1000),
            PayloadTooLargeError,
            "larger than the limit of 1000 characters",
            id="csv-over-max-bytes",
        ),
        pytest.param(
            lambda: csv_of("name", "A" * 500),
            ImportLimits(max_line=100),
            ValidationError,
            "table user: a line is longer than 100 characters",
            id="long-line",
        ),
        pytest.param(
            lambda: csv_of("name", '"' + "x\n" * 300 + '"'),
            ImportLimits(max_record=200),
            ValidationError,
            "table user: a row is longer than 200 characters",
            id="long-record",
        ),
        pytest.param(
            lambda: csv_of("name", *["Ada"] * 11),
            ImportLimits(max_rows=10),
            PayloadTooLargeError,
            "more than the limit of 10 rows",
            id="too-many-rows",
        ),
    ],
)
def test_imports_beyond_the_limits_are_refused_and_change_nothing(
    backend: str, upload: object, limits: ImportLimits, error: type[Exception], message: str
) -> None:
    seed()
    before = table_rows()
    with pytest.raises(error, match=message):
        import_upload(upload(), table="user", actor="tester", limits=limits)  # type: ignore[operator]
    assert table_rows() == before


def test_a_giant_cell_is_refused_with_bounded_memory(backend: str) -> None:
    giant = io.BytesIO(b"name\n" + b"x" * (64 << 20) + b"\n")  # 64 MiB in one cell
    tracemalloc.start()
    try:
        with pytest.raises(ValidationError, match="longer than 1048576 characters"):
            import_upload(
                giant, table="user", actor="tester", limits=ImportLimits(max_line=1 << 20)
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak >> 20} MiB for a 1 MiB line limit"


class CancelMidway(io.BytesIO):
    """An upload whose client goes away once half of it has been read."""

    def __init__(self, data: bytes, cancelled: threading.Event) -> None:
        super().__init__(data)
        self.cancelled = cancelled

    def read1(self, size: int | None = -1) -> bytes:
        if self.tell() > len(self.getbuffer()) // 2:
            self.cancelled.set()
        return super().read1(size)


def test_an_import_whose_client_went_away_stops_and_keeps_nothing(backend: str) -> None:
    seed()
    before = table_rows()
    cancelled = threading.Event()
    upload = CancelMidway(b"name\n" + b"Ada\n" * 100_000, cancelled)
    with pytest.raises(OperationCancelledError, match="table user: the import was stopped"):
        import_upload(upload, table="user", actor="tester", cancelled=cancelled)
    assert upload.tell() < len(upload.getbuffer()), "it read the whole upload"
    assert table_rows() == before


def test_within_the_limits_it_imports(backend: str) -> None:
    limits = ImportLimits(max_rows=3, max_line=10, max_record=20, max_bytes=100)
    summary = import_upload(
        csv_of("name", "Ada", "Bob", "Cy"), table="user", actor="t", limits=limits
    )
    assert summary.tables == {"user": 3}


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ImportLimits(max_rows=0)


def test_an_import_leaves_the_csv_field_limit_as_it_found_it(sqlite_db: Path) -> None:
    """The csv module's field limit is process-wide: an import raises it for its own cells
    (here a JSON cell above the limit the process set) and puts it back afterwards."""
    limit = csv.field_size_limit(1000)
    try:
        payload = json.dumps({"notes": "x" * 5000}).replace('"', '""')
        text = (
            "id,taken_at,day,weight,payload\n"
            f'{uuid.uuid4()},2026-01-01T00:00:00,2026-01-01,1.5,"{payload}"\n'
        )
        summary = import_upload(io.BytesIO(text.encode()), table="sample", actor="ada")
        assert summary.tables == {"sample": 1}
        assert csv.field_size_limit() == 1000
    finally:
        csv.field_size_limit(limit)
