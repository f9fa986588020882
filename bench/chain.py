"""What the audit log's hash chain costs: audited writes with the chain beside the same writes
with the chain step taken out (``storage._chain.link`` made a no-op), in one run, on one database;
and how fast ``verify_chain`` reads.

Usage::

    .venv/bin/python bench/chain.py                      # a temporary SQLite file
    .venv/bin/python bench/chain.py --url postgresql+psycopg://postgres@127.0.0.1/bench
    .venv/bin/python bench/chain.py --url mysql+pymysql://root@127.0.0.1/bench

Each measurement runs both ways, alternately, ``--repeat`` times; the best of each is printed.
``threads`` writes single inserts from several threads at once (one connection each), where
the writers take turns at the chain's head.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from benchkit import reset, timed
from sqlmodel import Field, SQLModel

from storage import _chain as chain
from storage import database
from storage._verification import verify_chain
from storage.accessor import ModelAccessor


class ChainBenchRow(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    value: float
    created_at: datetime


def rows(n: int) -> list[ChainBenchRow]:
    now = datetime.now(UTC)
    return [ChainBenchRow(name=f"row-{i}", value=i * 0.5, created_at=now) for i in range(n)]


@contextmanager
def unchained() -> Iterator[None]:
    """The writes as they were before the chain: no head lock, no hashes."""
    original = chain.link
    chain.link = lambda connection, audit, batch: None  # type: ignore[assignment]
    try:
        yield
    finally:
        chain.link = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--single", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workdir = tempfile.TemporaryDirectory()
    url = args.url or f"sqlite:///{Path(workdir.name) / 'bench.db'}"
    reset(url)
    database.set_database_url(url)
    accessor = ModelAccessor(ChainBenchRow, "bench")

    def single() -> float:
        objs = rows(args.single)
        return timed(lambda: [accessor.insert(obj, actor="bench") for obj in objs])

    def batch() -> float:
        objs = rows(args.batch)
        return timed(lambda: accessor.insert_many(objs, actor="bench"))

    def threaded() -> float:
        per_thread = args.single // args.threads
        work = [rows(per_thread) for _ in range(args.threads)]

        def write(objs: list[ChainBenchRow]) -> None:
            for obj in objs:
                accessor.insert(obj, actor="bench")

        threads = [threading.Thread(target=write, args=(objs,)) for objs in work]

        def run() -> None:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        return timed(run)

    print(f"database: {database.get_engine().url.get_backend_name()}")
    print(
        f"{'operation':40} {'rows':>7} {'chained rows/s':>15} {'unchained rows/s':>17} {'cost':>6}"
    )
    threaded_rows = args.single // args.threads * args.threads
    for label, n, measure in (
        ("insert one by one", args.single, single),
        ("insert_many (one transaction)", args.batch, batch),
        (f"insert one by one, {args.threads} threads", threaded_rows, threaded),
    ):
        ours, base = float("inf"), float("inf")
        for _ in range(args.repeat):
            ours = min(ours, measure())
            with unchained():
                base = min(base, measure())
        print(f"{label:40} {n:>7} {n / ours:>15,.0f} {n / base:>17,.0f} {ours / base - 1:>6.0%}")

    # Verification reads the rows written with the chain on; rows written without it would
    # be reported (a row without hash after the chain started), so start over.
    reset(url)
    database.get_database().dispose()
    accessor.insert_many(rows(args.batch * 5), actor="bench")
    report, seconds = None, float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        report = verify_chain()
        seconds = min(seconds, time.perf_counter() - start)
    assert report is not None and report.ok, report
    rate = report.checked / seconds
    print(f"{'verify_chain (pages of 1000)':40} {report.checked:>7} {rate:>15,.0f}")
    database.get_database().dispose()
    workdir.cleanup()


if __name__ == "__main__":
    main()
