"""HTTP throughput and server memory of the example machine app, beside a trivial endpoint.

Usage::

    .venv/bin/python bench/http.py                       # about 3 minutes on 2 cores
    .venv/bin/python bench/http.py --rows 200000 --seconds 4

Each server runs in its own process (its own GIL): the models and accessors of
``examples/machine_app.py`` bootstrapped without the row cap, plus ``GET /ping``, under uvicorn
on 127.0.0.1 with a temporary SQLite file. One server starts empty, one with ``--table-rows``
machines; their request runs are interleaved in rounds so that a busy machine slows both
alike. Load comes from ``wrk`` when it is installed, else from Python threads with keep-alive
httpx clients; every run is bounded in time and in requests. Rows are loaded before the servers
start or while they idle, never on the clock. Export, backup and restore each run on a fresh
server process whose memory is read from ``/proc/<pid>/status`` (VmRSS every 10 ms, VmHWM after).

Targets: GET by id at least 60% of ``GET /ping``; POST at 100,000 rows within 10% of POST on an
empty table; server peak RSS growth under 50 MB for export, backup and restore at any size.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path, where this file would stand in for the
# standard library's ``http`` package: move the folder behind the standard library, and put the
# repository (for ``examples``) in front.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import importlib.util
import os
import shutil
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import httpx
from examples.machine_app import Machine, machines, tools, workcells
from httpload import Load, Rate, Server, peak_rss
from sqlalchemy import create_engine, func, insert, select

from storage import database
from storage.auditor import AuditLog
from storage.bootstrap import prepare_database

ADMIN = {"X-User": "bench"}
MB = 1_000_000
GET_TARGET, POST_TARGET, RSS_TARGET_MB = 0.60, 0.90, 50
WORKCELLS = 10


# -- the server -----------------------------------------------------------------------------


def serve(url: str, port: int) -> None:
    """The example's accessors without the row cap, plus ``GET /ping``, under uvicorn."""
    import uvicorn
    from fastapi import FastAPI

    from storage import bootstrap

    app = FastAPI(title="machine app (bench)")

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/ping-sync")
    def ping_sync() -> dict[str, bool]:
        return {"ok": True}

    bootstrap(
        app,
        accessors=[workcells, machines, tools],
        database_url=url,
        auto_migrate=True,
        max_records_per_model=None,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def bench_server(url: str, log: Path) -> Server:
    """:func:`serve` on ``url`` in a child process."""
    return Server(__file__, ["--serve", url], log, ready_path="/db/health")


# -- data -----------------------------------------------------------------------------------


def counts(url: str) -> tuple[int, int]:
    """Rows in the machine table and in the audit log."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            machine_rows, audit_rows = (
                int(connection.scalar(select(func.count()).select_from(model)) or 0)
                for model in (Machine, AuditLog)
            )
            return machine_rows, audit_rows
    finally:
        engine.dispose()


def top_up(url: str, total: int, *, audited: bool) -> None:
    """Add machines until there are ``total``: with ``insert_many`` (an audit row each, as
    through the API) or with Core ``executemany`` (no audit rows; much faster)."""
    prepare_database(database_url=url)
    engine = database.get_engine()
    have, _ = counts(url)
    with engine.begin() as connection:
        if not connection.scalar(select(func.count()).select_from(workcells.model)):
            cells = [{"name": f"cell {i}"} for i in range(WORKCELLS)]
            connection.execute(insert(workcells.model), cells)
    try:
        for start in range(have, total, 20_000):
            rows = [_machine(i) for i in range(start, min(start + 20_000, total))]
            if audited:
                machines.insert_many([Machine(**row) for row in rows], actor="bench")
            else:
                with engine.begin() as connection:
                    connection.execute(insert(Machine), rows)
    finally:
        database.get_database().dispose()


def _machine(i: int) -> dict[str, Any]:
    commissioned = datetime(2024, 1 + i % 12, 1 + i % 28, tzinfo=UTC) if i % 3 else None
    kind = "robot" if i % 4 else "conveyor"
    return {
        "serial": f"B{i:08d}",
        "kind": kind,
        "workcell_id": i % WORKCELLS + 1,
        "payload_kg": i % 50 * 0.5,
        "commissioned_at": commissioned,
    }


def describe_database(url: str) -> str:
    machine_rows, audit_rows = counts(url)
    size = Path(url.removeprefix("sqlite:///")).stat().st_size / MB
    return f"{machine_rows:,} machines, {audit_rows:,} audit rows, {size:,.0f} MB file"


# -- measurements ---------------------------------------------------------------------------


def page_time(client: httpx.Client, path: str, repeat: int = 20) -> float:
    """Median milliseconds of one list page, one request at a time, after two warm-ups."""
    times = []
    for i in range(repeat + 2):
        start = time.perf_counter()
        client.get(path).raise_for_status()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


@dataclass
class Transfer:
    seconds: float
    megabytes: float
    rss_before: float
    growth_sampled: float
    growth_hwm: float
    first_byte: float | None  # seconds until the first byte of a download arrived

    @property
    def growth(self) -> float:
        return max(self.growth_sampled, self.growth_hwm)


Work = Callable[[httpx.Client], tuple[int, float | None]]


def transfer(server: Server, work: Work) -> Transfer:
    """Time ``work`` (it returns the bytes it moved and, for a download, the seconds to its
    first byte) and the growth of the server's RSS."""
    with httpx.Client(base_url=server.base, headers=ADMIN, timeout=900) as client:
        client.get("/db/health").raise_for_status()
        with peak_rss(server) as seen:
            start = time.perf_counter()
            moved, first_byte = work(client)
            elapsed = time.perf_counter() - start
    before, peak = seen
    hwm = server.memory("VmHWM")
    return Transfer(
        elapsed, moved / MB, before / MB, (peak - before) / MB, (hwm - before) / MB, first_byte
    )


def download(path: str, target: Path) -> Work:
    def work(client: httpx.Client) -> tuple[int, float | None]:
        start, first_byte = time.perf_counter(), None
        with client.stream("GET", path) as answer, target.open("wb") as file:
            answer.raise_for_status()
            for chunk in answer.iter_raw(1 << 16):
                if first_byte is None:
                    first_byte = time.perf_counter() - start
                file.write(chunk)
        return target.stat().st_size, first_byte

    return work


def upload(source: Path, expected_rows: int) -> Work:
    def work(client: httpx.Client) -> tuple[int, float | None]:
        with source.open("rb") as file:
            answer = client.post("/db/restore", files={"file": ("backup.sqlite", file)})
        answer.raise_for_status()
        if (restored := answer.json()["tables"]["machine"]) != expected_rows:
            raise RuntimeError(f"restore counted {restored} machines, expected {expected_rows}")
        return source.stat().st_size, None

    return work


def database_operations(url: str, workdir: Path, log: Path) -> dict[str, Transfer]:
    """Export, backup and restore, each on a fresh server process."""
    rows, _ = counts(url)
    zipped, backup = workdir / "export.zip", workdir / "backup.sqlite"
    steps = {
        "GET /db/export.zip": download("/db/export.zip", zipped),
        "GET /db/backup.sqlite": download("/db/backup.sqlite", backup),
        "POST /db/restore": upload(backup, rows),
    }
    results = {}
    for label, work in steps.items():
        with bench_server(url, log) as server:
            results[label] = transfer(server, work)
    with zipfile.ZipFile(zipped) as archive:
        if "machine.csv" not in archive.namelist():
            raise RuntimeError("the export has no machine.csv")
    return results


# -- the run --------------------------------------------------------------------------------


def measure_requests(
    empty: Server, full: Server, empty_url: str, load: Load, args: argparse.Namespace
) -> tuple[dict[str, Rate], list[tuple[str, float]]]:
    """Request rates, interleaved over ``args.rounds`` rounds, and list page times."""
    deep = args.table_rows * 9 // 10
    pages = []
    with httpx.Client(base_url=full.base) as client:
        # The cursor after row `deep` comes from the page that ends there (not timed).
        cursor = client.get(f"/machines/?offset={deep - 100}").headers["X-Next-Cursor"]
        for label, query in (
            ("?limit=100", "limit=100"),
            (f"?offset={deep}&limit=100", f"offset={deep}&limit=100"),
            (f"?cursor=<after row {deep:,}>&limit=100", f"cursor={cursor}&limit=100"),
        ):
            pages.append((label, page_time(client, f"/machines/?{query}")))

    windows: dict[str, list[Rate]] = {}

    def run(name: str, server: Server, mode: str, path: str, **options: Any) -> None:
        rate = load.run(server, mode, path, args.seconds / args.rounds, **options)
        windows.setdefault(name, []).append(rate)

    tag = f"P{os.getpid()}"
    for n in range(args.rounds):
        run("ping", full, "get", "/ping")
        run("ping-sync", full, "get", "/ping-sync")
        run("post-empty", empty, "post", "/machines/", tag=f"{tag}-{n}-e")
        run("post-full", full, "post", "/machines/", tag=f"{tag}-{n}-f")
        run("get-empty", empty, "id", "/machines/", max_id=counts(empty_url)[0])
        run("get-full", full, "id", "/machines/", max_id=args.table_rows)
    return {name: Rate.merge(parts) for name, parts in windows.items()}, pages


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report_requests(
    rates: dict[str, Rate], pages: list[tuple[str, float]], sizes: dict[str, str]
) -> list[str]:
    print(
        f"\n{'request':34} {'rows':>19} {'req/s':>7} {'/ping':>6} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'failed':>6} {'server CPU ms/req':>18}"
    )
    ping = rates["ping"]
    labels = {
        "ping": ("GET /ping (async def)", "-"),
        "ping-sync": ("GET /ping-sync (def, threadpool)", "-"),
        "post-empty": ("POST /machines/", sizes["post-empty"]),
        "post-full": ("POST /machines/", sizes["post-full"]),
        "get-empty": ("GET /machines/{id}", sizes["get-empty"]),
        "get-full": ("GET /machines/{id}", sizes["get-full"]),
    }
    for name, (label, rows) in labels.items():
        rate = rates[name]
        print(
            f"{label:34} {rows:>19} {rate.per_second:>7,.0f} "
            f"{rate.per_second / ping.per_second:>6.2f} {rate.p50_ms:>7.1f} "
            f"{rate.p99_ms:>7.1f} {rate.failed:>6} {rate.cpu_ms:>18.2f}"
        )
    print(
        f"\n{'list page at ' + sizes['get-full'] + ' rows':37} {'median ms':>9} {'/offset 0':>10}"
    )
    for label, ms in pages:
        print(f"{label:37} {ms:>9.1f} {ms / pages[0][1]:>10.2f}")
    get, post, empty = rates["get-full"], rates["post-full"], rates["post-empty"]
    return [
        f"{verdict(get.per_second >= GET_TARGET * ping.per_second)}  GET by id: "
        f"{get.per_second / ping.per_second:.0%} of /ping req/s (>= 60%); "
        f"server CPU {get.cpu_ms:.2f} vs {ping.cpu_ms:.2f} ms/req",
        f"{verdict(post.per_second >= POST_TARGET * empty.per_second)}  POST at "
        f"{sizes['post-full']} rows: {post.per_second / empty.per_second:.0%} of POST on an "
        f"empty table (>= 90%); server CPU {post.cpu_ms:.2f} vs {empty.cpu_ms:.2f} ms/req",
    ]


def report_transfers(rows: int, title: str, results: dict[str, Transfer]) -> list[str]:
    print(f"\n{title}")
    print(
        f"{'operation':24} {'seconds':>8} {'first byte s':>12} {'MB':>7} {'RSS before MB':>14} "
        f"{'growth MB (10 ms samples / VmHWM)':>35}"
    )
    notes = []
    for label, t in results.items():
        growth = f"{t.growth_sampled:.1f} / {t.growth_hwm:.1f}"
        first = "-" if t.first_byte is None else f"{t.first_byte:.2f}"
        print(
            f"{label:24} {t.seconds:>8.1f} {first:>12} {t.megabytes:>7.1f} "
            f"{t.rss_before:>14.0f} {growth:>35}"
        )
        notes.append(
            f"{verdict(t.growth < RSS_TARGET_MB)}  {label} at {rows:,} rows: "
            f"peak RSS growth {t.growth:.1f} MB (< 50 MB)"
        )
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=int,
        default=1_000_000,
        help="machines for export, backup and restore (1,000,000)",
    )
    parser.add_argument(
        "--table-rows", type=int, default=100_000, help="machines for POST and GET (100,000)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=9,
        help="seconds of load per request kind, in whole-second windows (9)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved windows per request kind (3)"
    )
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (8)")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    empty_url = f"sqlite:///{workdir / 'empty.db'}"
    url, log = f"sqlite:///{workdir / 'full.db'}", workdir / "server.log"
    load = Load(args.connections, workdir)
    try:
        top_up(empty_url, 0, audited=True)
        top_up(url, args.table_rows, audited=True)
        with ExitStack() as stack:
            empty = stack.enter_context(bench_server(empty_url, log))
            full = stack.enter_context(bench_server(url, log))
            rates, pages = measure_requests(empty, full, empty_url, load, args)
        grown_empty, grown_full = counts(empty_url)[0], counts(url)[0]
        sizes = {
            "post-empty": f"0 -> {grown_empty:,}",
            "post-full": f"{args.table_rows:,} -> {grown_full:,}",
            "get-empty": f"<= {grown_empty:,}",
            "get-full": f"{args.table_rows:,}",
        }
        small = counts(url)[0], describe_database(url), database_operations(url, workdir, log)
        top_up(url, args.rows, audited=False)
        large = counts(url)[0], describe_database(url), database_operations(url, workdir, log)
    except BaseException:
        print(f"server log: {log}", file=sys.stderr)
        raise

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    print(
        f"server: uvicorn {version('uvicorn')} ({http}, {loop}), one process per server, "
        f"access log off; FastAPI {version('fastapi')}; SQLite (WAL) temporary files; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"load: {load.describe()}, {args.seconds:g} s per request kind in {args.rounds} "
        f"interleaved rounds; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; {time.perf_counter() - started:.0f} s in all"
    )
    notes = report_requests(rates, pages, sizes)
    notes += report_transfers(*small)
    notes += report_transfers(*large)
    print("\n" + "\n".join(notes))
    if failed := sum(rate.failed for rate in rates.values()):
        print(f"WARNING: {failed} requests failed (non-2xx or socket errors); see {log}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
