"""Accessor throughput beside plain SQLAlchemy Core, in one run, on one database.

Usage::

    .venv/bin/python bench/accessor.py                      # a temporary SQLite file
    .venv/bin/python bench/accessor.py --url postgresql+psycopg://postgres@127.0.0.1/test
    .venv/bin/python bench/accessor.py --synchronous NORMAL    # SQLite's faster, less durable mode
    .venv/bin/python bench/accessor.py --metrics               # with Prometheus metrics on

Objects and parameter lists are built before each clock starts. Targets on SQLite: audited
``insert_many`` at least 1/10 of unaudited Core ``executemany``; single audited inserts at
least 1,500 rows/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchkit import reset, timed
from sqlalchemy import func, insert, select
from sqlmodel import Field, SQLModel

from storage import database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog


class BenchRow(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    value: float
    created_at: datetime
    deleted_at: datetime | None = None


def rows(n: int) -> list[BenchRow]:
    now = datetime.now(UTC)
    return [BenchRow(name=f"row-{i}", value=i * 0.5, created_at=now) for i in range(n)]


def params(n: int) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [{"name": f"row-{i}", "value": i * 0.5, "created_at": now} for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--scan", type=int, default=100_000)
    parser.add_argument(
        "--synchronous", default="FULL", help="SQLite PRAGMA synchronous (FULL, the default)"
    )
    parser.add_argument(
        "--metrics", action="store_true", help="count writes and waits as an app with metrics does"
    )
    args = parser.parse_args()
    metrics = None
    if args.metrics:
        # This folder's http.py would shadow the standard library's for FastAPI.
        here = str(Path(__file__).resolve().parent)
        sys.path[:] = [entry for entry in sys.path if str(Path(entry).resolve()) != here]
        from storage.metrics import StorageMetrics

        metrics = StorageMetrics()
    workdir = tempfile.TemporaryDirectory()
    url = args.url or f"sqlite:///{Path(workdir.name) / 'bench.db'}"

    reset(url)
    database.set_database_url(url)
    database.get_database().set_sqlite_synchronous(args.synchronous)
    accessor = ModelAccessor(BenchRow, "bench")
    table = BenchRow.__table__  # type: ignore[attr-defined]
    engine = database.get_engine()
    results: list[tuple[str, int, float, float]] = []

    def record(label: str, n: int, ours: float, core: float) -> None:
        results.append((label, n, n / ours, n / core))

    # Single inserts: one audited transaction per row vs one Core transaction per row.
    objs, plain = rows(args.single), params(args.single)
    ours = timed(lambda: [accessor.insert(obj, actor="bench") for obj in objs])

    def core_single() -> None:
        for row in plain:
            with engine.begin() as connection:
                connection.execute(insert(table), row)

    record("insert one by one (audited vs Core)", args.single, ours, timed(core_single))

    # Batch inserts: insert_many (audited, one transaction) vs Core executemany (no audit).
    objs, plain = rows(args.batch), params(args.batch)
    ours = timed(lambda: accessor.insert_many(objs, actor="bench"))

    def core_batch() -> None:
        with engine.begin() as connection:
            connection.execute(insert(table), plain)

    record("insert_many (audited vs Core executemany)", args.batch, ours, timed(core_batch))

    # Full scans of a table with `scan` live rows.
    reset(url)
    database.get_database().dispose()
    with engine.begin() as connection:
        connection.execute(insert(table), params(args.scan))

    def core_scan() -> None:
        with engine.connect() as connection:
            connection.execute(select(table)).all()

    core = timed(core_scan)
    ours = timed(accessor.all)
    record("all() (ORM objects vs Core rows)", args.scan, ours, core)

    with database.read_session() as session:
        audit_rows = session.scalar(select(func.count()).select_from(AuditLog))
    print(f"database: {engine.url.get_backend_name()}  (audit rows after the reset: {audit_rows})")
    print(f"{'operation':44} {'rows':>8} {'ours rows/s':>12} {'baseline rows/s':>16} {'ratio':>6}")
    for label, n, ours_rate, core_rate in results:
        ratio = ours_rate / core_rate
        print(f"{label:44} {n:>8} {ours_rate:>12,.0f} {core_rate:>16,.0f} {ratio:>6.2f}")
    if metrics is not None:
        counted = metrics.writes.labels("bench", "create")._value.get()
        print(f"metrics on: {counted:,.0f} writes counted")
    database.get_database().dispose()
    workdir.cleanup()


if __name__ == "__main__":
    main()
