"""HTTP throughput and server memory of the example machine app, beside a trivial endpoint.

Usage::

    .venv/bin/python bench/http.py                       # about 5 minutes on 2 cores
    .venv/bin/python bench/http.py --rows 200000 --seconds 3

The server runs in its own process (its own GIL): the models and accessors of
``examples/machine_app.py`` bootstrapped without the row cap, plus ``GET /ping``, under uvicorn
on 127.0.0.1 with a temporary SQLite file. Load comes from ``wrk`` when it is installed, else
from Python threads with keep-alive httpx clients; every load run is bounded in time and in
requests. Rows are bulk-loaded outside the clock. Export, backup and restore each run on a
fresh server process whose memory is read from ``/proc/<pid>/status`` (VmRSS every 10 ms,
VmHWM after).

Targets: GET by id at least 60% of ``GET /ping``; POST at 100,000 rows within 10% of POST on an
empty table; server peak RSS growth under 50 MB for export, backup and restore at any size.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder would lead sys.path and this file would stand in for the
# standard library's ``http`` package: take the folder off and put the repository on instead.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    del sys.path[0]
sys.path.insert(0, str(ROOT))

import argparse
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version

import httpx
from sqlalchemy import create_engine, func, insert, select

from examples.machine_app import Machine, machines, tools, workcells
from storage import database
from storage.auditor import AuditLog

ADMIN = {"X-User": "bench"}
MB = 1_000_000
GET_TARGET, POST_TARGET, RSS_TARGET_MB = 0.60, 0.90, 50
MAX_REQUESTS = 200_000  # per load run; the time limit normally ends it first
WORKCELLS = 10


# -- the server ---------------------------------------------------------------------------


def serve(port: int, url: str) -> None:
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
        create_tables=True,
        auto_migrate=True,
        max_records_per_model=None,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    """This script in ``--serve`` mode, in a child process on a free port."""

    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log

    def __enter__(self) -> Server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        command = [sys.executable, __file__, "--serve", str(port), "--url", self.url]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.base}/db/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"the server did not start; see {self.log}")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM of the server process, in bytes."""
        found = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024
        return found


# -- load -----------------------------------------------------------------------------------


@dataclass
class Rate:
    requests: int
    seconds: float
    failed: int  # non-2xx answers and socket errors
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


_WRK_SCRIPT = """
local mode, path, max_id, limit, tag = "%(mode)s", "%(path)s", %(max_id)d, %(limit)d, "%(tag)s"
local made = 0
wrk.headers["X-User"] = "bench"
wrk.headers["Content-Type"] = "application/json"
function setup(thread) thread:set("tid", #threads_seen + 1) table.insert(threads_seen, thread) end
threads_seen = {}
function init(args) math.randomseed(tid * 7919) end
function request()
  made = made + 1
  if made > limit then wrk.thread:stop() end
  if mode == "id" then return wrk.format("GET", path .. math.random(1, max_id)) end
  if mode == "post" then
    local body = string.format(
      '{"serial":"%%s-%%d-%%d","workcell_id":%%d,"payload_kg":5.5}', tag, tid, made, made %% 10 + 1)
    return wrk.format("POST", path, nil, body)
  end
  return wrk.format("GET", path)
end
function done(s, latency, requests)
  local e = s.errors
  io.write(string.format("WRK %%d %%d %%d %%d %%d\\n", s.requests, s.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


class Load:
    """Keep-alive load from ``wrk`` (one thread) or, without it, Python threads with httpx."""

    def __init__(self, base: str, connections: int, seconds: float, workdir: Path) -> None:
        self.base, self.connections, self.seconds = base, connections, seconds
        self.workdir = workdir
        self.wrk = shutil.which("wrk")

    def describe(self) -> str:
        how = "wrk, 1 thread" if self.wrk else "Python threads with httpx (wrk not found)"
        return f"{how}, {self.connections} keep-alive connections, {self.seconds:g} s per run"

    def run(self, mode: str, path: str, *, max_id: int = 0, tag: str = "") -> Rate:
        """``mode``: ``get`` the path, ``id`` GET path + a random id, ``post`` a new machine."""
        if self.wrk:
            return self._run_wrk(mode, path, max_id, tag)
        return self._run_threads(mode, path, max_id, tag)

    def _run_wrk(self, mode: str, path: str, max_id: int, tag: str) -> Rate:
        limit = MAX_REQUESTS  # one wrk thread makes every request
        script = self.workdir / "load.lua"
        values = {"mode": mode, "path": path, "max_id": max_id, "limit": limit, "tag": tag}
        script.write_text(_WRK_SCRIPT % values)
        command = [self.wrk, "-t1", f"-c{self.connections}", f"-d{self.seconds:g}s"]
        command += ["--timeout", "10s", "-s", str(script), self.base]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        line = next(line for line in output.splitlines() if line.startswith("WRK "))
        requests, micros, failed, p50, p99 = map(int, line.split()[1:])
        return Rate(requests, micros / 1e6, failed, p50 / 1000, p99 / 1000)

    def _run_threads(self, mode: str, path: str, max_id: int, tag: str) -> Rate:
        lock, latencies, failures = threading.Lock(), [], [0]
        deadline = time.perf_counter() + self.seconds
        per_thread = MAX_REQUESTS // self.connections

        def worker(tid: int) -> None:
            mine, failed = [], 0
            ids = iter(range(1, per_thread + 1))
            with httpx.Client(base_url=self.base, headers=ADMIN, timeout=10) as client:
                while time.perf_counter() < deadline and (n := next(ids, None)) is not None:
                    start = time.perf_counter()
                    if mode == "post":
                        body = {"serial": f"{tag}-{tid}-{n}", "workcell_id": n % 10 + 1}
                        answer = client.post(path, json={**body, "payload_kg": 5.5})
                    else:
                        suffix = str(n * 7919 % max_id + 1) if mode == "id" else ""
                        answer = client.get(path + suffix)
                    mine.append(time.perf_counter() - start)
                    failed += not answer.is_success
            with lock:
                latencies.extend(mine)
                failures[0] += failed

        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(self.connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        cuts = statistics.quantiles(latencies, n=100)
        return Rate(len(latencies), elapsed, failures[0], cuts[49] * 1000, cuts[98] * 1000)


# -- data -----------------------------------------------------------------------------------


def machine_count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(Machine)) or 0)
    finally:
        engine.dispose()


def load_audited(url: str, total: int) -> int:
    """Top the machine table up to ``total`` rows with ``insert_many`` (an audit row each)."""
    have = machine_count(url)
    database.set_database_url(url)
    try:
        for start in range(have, total, 10_000):
            batch = [_machine(i) for i in range(start, min(start + 10_000, total))]
            machines.insert_many([Machine(**row) for row in batch], actor="bench")
    finally:
        database.get_database().dispose()
    return max(total - have, 0)


def load_core(url: str, total: int) -> int:
    """Top the machine table up to ``total`` rows with Core ``executemany`` (no audit rows)."""
    have = machine_count(url)
    engine = create_engine(url)
    try:
        for start in range(have, total, 50_000):
            with engine.begin() as connection:
                rows = [_machine(i) for i in range(start, min(start + 50_000, total))]
                connection.execute(insert(Machine), rows)
    finally:
        engine.dispose()
    return max(total - have, 0)


def _machine(i: int) -> dict[str, object]:
    commissioned = datetime(2024, 1 + i % 12, 1 + i % 28, tzinfo=UTC) if i % 3 else None
    return {
        "serial": f"B{i:08d}",
        "kind": "robot" if i % 4 else "conveyor",
        "workcell_id": i % WORKCELLS + 1,
        "payload_kg": i % 50 * 0.5,
        "commissioned_at": commissioned,
    }


def table_sizes(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            counts = [
                int(connection.scalar(select(func.count()).select_from(m)) or 0)
                for m in (Machine, AuditLog)
            ]
    finally:
        engine.dispose()
    size = Path(url.removeprefix("sqlite:///")).stat().st_size / MB
    return f"{counts[0]:,} machines, {counts[1]:,} audit rows, {size:,.0f} MB file"


# -- measurements ---------------------------------------------------------------------------


def page_time(client: httpx.Client, path: str, repeat: int = 20) -> float:
    """Median milliseconds of one list page, one request at a time, after two warm-ups."""
    times = []
    for i in range(repeat + 2):
        start = time.perf_counter()
        answer = client.get(path)
        answer.raise_for_status()
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

    @property
    def growth(self) -> float:
        return max(self.growth_sampled, self.growth_hwm)


@contextmanager
def peak_rss(server: Server) -> Iterator[list[int]]:
    """Yield ``[rss_before, peak]``; peak is the largest VmRSS seen every 10 ms meanwhile."""
    seen = [server.memory()["VmRSS"]] * 2
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            seen[1] = max(seen[1], server.memory()["VmRSS"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        stop.set()
        sampler.join()


def transfer(server: Server, work: Callable[[httpx.Client], int]) -> Transfer:
    """Time ``work`` (which returns the bytes it moved) and the server's RSS growth."""
    with httpx.Client(base_url=server.base, headers=ADMIN, timeout=900) as client:
        client.get("/db/health").raise_for_status()
        with peak_rss(server) as seen:
            start = time.perf_counter()
            moved = work(client)
            elapsed = time.perf_counter() - start
    hwm = server.memory()["VmHWM"]
    before, peak = seen
    return Transfer(elapsed, moved / MB, before / MB, (peak - before) / MB, (hwm - before) / MB)


def download(path: str, target: Path) -> Callable[[httpx.Client], int]:
    def work(client: httpx.Client) -> int:
        with client.stream("GET", path) as answer, target.open("wb") as file:
            answer.raise_for_status()
            for chunk in answer.iter_bytes(1 << 16):
                file.write(chunk)
        return target.stat().st_size

    return work


def upload(source: Path, expected_rows: int) -> Callable[[httpx.Client], int]:
    def work(client: httpx.Client) -> int:
        with source.open("rb") as file:
            answer = client.post("/db/restore", files={"file": ("backup.sqlite", file)})
        answer.raise_for_status()
        restored = answer.json()["tables"]["machine"]
        if restored != expected_rows:
            raise RuntimeError(f"restore counted {restored} machines, expected {expected_rows}")
        return source.stat().st_size

    return work


def database_operations(url: str, workdir: Path, log: Path) -> dict[str, Transfer]:
    """Export, backup and restore, each on a fresh server process."""
    rows = machine_count(url)
    results, zipped, backup = {}, workdir / "export.zip", workdir / "backup.sqlite"
    steps = [
        ("GET /db/export.zip", download("/db/export.zip", zipped)),
        ("GET /db/backup.sqlite", download("/db/backup.sqlite", backup)),
        ("POST /db/restore", upload(backup, rows)),
    ]
    for label, work in steps:
        with Server(url, log) as server:
            results[label] = transfer(server, work)
    with zipfile.ZipFile(zipped) as archive:
        if "machine.csv" not in archive.namelist():
            raise RuntimeError("the export has no machine.csv")
    return results


# -- report ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_rates(rates: list[tuple[str, str, Rate]], ping: Rate) -> None:
    print(f"\n{'request':40} {'rows':>17} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'failed':>6} {'/ping':>6}")
    for label, rows, rate in rates:
        share = rate.per_second / ping.per_second
        print(f"{label:40} {rows:>17} {rate.per_second:>8,.0f} {rate.p50_ms:>7.1f} "
              f"{rate.p99_ms:>7.1f} {rate.failed:>6} {share:>6.2f}")


def print_transfers(title: str, results: dict[str, Transfer]) -> list[str]:
    print(f"\n{title}")
    print(f"{'operation':24} {'seconds':>8} {'MB':>7} {'RSS before MB':>14} "
          f"{'growth MB (10 ms samples / VmHWM)':>35} {'< 50 MB':>8}")
    notes = []
    for label, t in results.items():
        ok = t.growth < RSS_TARGET_MB
        growth = f"{t.growth_sampled:.1f} / {t.growth_hwm:.1f}"
        print(f"{label:24} {t.seconds:>8.1f} {t.megabytes:>7.0f} {t.rss_before:>14.0f} "
              f"{growth:>35} {verdict(ok):>8}")
        notes.append(f"{verdict(ok)}  {label}: peak RSS growth {t.growth:.1f} MB (< 50 MB)")
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for export/backup")
    parser.add_argument("--table-rows", type=int, default=100_000, help="rows for POST/GET")
    parser.add_argument("--seconds", type=float, default=10, help="length of each load run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.url)
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    url, log = f"sqlite:///{workdir / 'bench.db'}", workdir / "server.log"
    tag = f"P{os.getpid()}"
    table_rows, rows = args.table_rows, args.rows
    rates: list[tuple[str, str, Rate]] = []
    pages: list[tuple[str, float]] = []
    try:
        with Server(url, log) as server:
            load = Load(server.base, args.connections, args.seconds, workdir)
            with httpx.Client(base_url=server.base, headers=ADMIN) as client:
                for i in range(WORKCELLS):
                    client.post("/workcells/", json={"name": f"cell {i}"}).raise_for_status()
                for path in ("/ping", "/ping-sync", "/machines/"):
                    client.get(path).raise_for_status()
            ping = load.run("get", "/ping")
            rates.append(("GET /ping (async def: the limit)", "-", ping))
            rates.append(("GET /ping-sync (def: threadpool)", "-", load.run("get", "/ping-sync")))
            post_empty = load.run("post", "/machines/", tag=f"{tag}a")
            small = machine_count(url)
            rates.append(("POST /machines/ (empty table)", f"0 -> {small:,}", post_empty))
            get_small = load.run("id", "/machines/", max_id=small)
            rates.append(("GET /machines/{id}", f"{small:,}", get_small))

            load_audited(url, table_rows)
            deep = table_rows * 9 // 10
            with httpx.Client(base_url=server.base) as client:
                # The cursor after row `deep`, from the page that ends there (not timed).
                cursor = client.get(f"/machines/?offset={deep - 100}").headers["X-Next-Cursor"]
                for label, query in (
                    ("?limit=100", "limit=100"),
                    (f"?offset={deep}&limit=100", f"offset={deep}&limit=100"),
                    (f"?cursor=<after row {deep:,}>&limit=100", f"cursor={cursor}&limit=100"),
                ):
                    pages.append((label, page_time(client, f"/machines/?{query}")))
            get_big = load.run("id", "/machines/", max_id=table_rows)
            rates.append(("GET /machines/{id}", f"{table_rows:,}", get_big))
            post_big = load.run("post", "/machines/", tag=f"{tag}b")
            grown = machine_count(url)
            rates.append(("POST /machines/", f"{table_rows:,} -> {grown:,}", post_big))
            describe = load.describe()
        small_db = table_sizes(url)
        small_ops = database_operations(url, workdir, log)
        load_core(url, rows)
        big_db = table_sizes(url)
        big_ops = database_operations(url, workdir, log)
    except BaseException:
        print(f"server log: {log}", file=sys.stderr)
        raise

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    print(f"server: uvicorn {version('uvicorn')} ({http}, {loop}), one process, access log off;"
          f" FastAPI {version('fastapi')}; SQLite (WAL) temporary file; {os.cpu_count()} CPUs")
    print(f"load: {describe}")
    print_rates(rates, ping)
    print(f"\nlist page, {table_rows:,} rows        median ms  vs offset 0")
    for label, ms in pages:
        print(f"{label:34} {ms:>9.1f} {ms / pages[0][1]:>11.2f}")
    notes = [
        f"{verdict(get_big.per_second >= GET_TARGET * ping.per_second)}  GET by id at "
        f"{table_rows:,} rows: {get_big.per_second / ping.per_second:.0%} of /ping (>= 60%)",
        f"{verdict(post_big.per_second >= POST_TARGET * post_empty.per_second)}  POST at "
        f"{table_rows:,} rows: {post_big.per_second / post_empty.per_second:.0%} of POST on "
        "an empty table (>= 90%)",
    ]
    notes += print_transfers(small_db, small_ops)
    notes += print_transfers(big_db, big_ops)
    failed = sum(rate.failed for _, _, rate in rates)
    print("\n" + "\n".join(notes))
    if failed:
        print(f"WARNING: {failed} requests failed (non-2xx or socket errors); see {log}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
