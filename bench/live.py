"""The live change feed (``GET /db/changes``): how soon a committed write reaches a streaming
client, what 200 streaming clients cost a server, and how much they slow its writers.

Usage::

    .venv/bin/python bench/live.py                     # SQLite file and PostgreSQL, ~1.5 minutes
    .venv/bin/python bench/live.py --backends sqlite --subscribers 50

Per backend, two uvicorn servers (``tests/e2e/cell_app.py``) on one new database (a temporary
SQLite file, or a database created on the PostgreSQL server and dropped after). Writes are
``POST /parts/`` to A; a stream's clients stamp each event when its ``data:`` line arrives
(``time.perf_counter()``, one machine, one clock), keyed by the event's ``record_id``:

- *delivery latency*: one client streams from A (same server) or from B (the other server,
  which learns of the write through the database: PostgreSQL ``NOTIFY``, SQLite
  ``PRAGMA data_version`` polled every 50 ms) while 200 parts are posted to A, 20 ms apart, by a
  thread of their own. Latency is arrival - the POST's 201 answer; the write committed before
  the server answered, so this is how long after the writer knew its write the reader knew it
  (it can be negative: the event may overtake the answer). Arrival - the POST's sending is
  shown too.
- *fan-out*: 200 subscribers (asyncio + ``httpx.AsyncClient``, one connection each) on A while
  a writer thread posts 100 parts/s for 10 s (fewer when the server answers slower than that:
  it waits for each answer; the rate reached is printed): latency over every subscriber's
  events, events per subscriber (each must get every write), A's ``VmRSS`` before the
  subscribers connect and with them connected, and CPU seconds of A and of this process
  meanwhile;
- *write throughput*: POSTs per second of 4 closed-loop writer threads (each as fast as it
  can, 5 s) on A, first with no subscriber, then with the 200 connected and reading.

Baselines measured in the same run: the ``GET /db/health`` round trip on A (a trivial endpoint
that queries the database), and single-row ``INSERT`` + ``COMMIT`` with SQLAlchemy Core into a
table like ``part`` on the same database, from this process (SQLite with the app's
``synchronous = NORMAL``; no audit row, so one row per commit where the app writes two).

The clients run in this process and share the machine's cores with the servers: under fan-out
an arrival is stamped when this process's event loop gets to it, which includes its own
queueing; the CPU seconds printed tell which side was busy.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path, where ``bench/http.py`` would stand in for
# the standard library's ``http``: move the folder behind, and put the tests' support in front.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
from cells import round_trips  # bench/ is on the path, behind the standard library
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, event

from support.backends import fresh_database
from support.servers import Server, server_process

ROOT = Path(__file__).resolve().parent.parent
ADA = {"X-User": "bench"}
STREAM = "/db/changes"
INTERVAL = 0.02  # seconds between the writes of a latency run
Stamps = dict[str, tuple[float, float]]  # record id -> (POST sent, 201 received), perf_counter


def percentiles(values: list[float]) -> str:
    if not values:
        return "(no values)"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    median = statistics.median(ordered)
    return f"p50 {median * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  (n={len(values)})"


class Output:
    """Reads a server's output on a thread (a full pipe would stall the server), kept for the
    end."""

    def __init__(self, server: Server) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(server,), daemon=True)
        self._thread.start()

    def _read(self, server: Server) -> None:
        try:
            for line in server.process.stdout or ():
                self.lines.append(line.rstrip("\n"))
        except (ValueError, OSError):  # closed under us: the server was stopped
            pass

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "\n".join(self.lines)


def servers(stack: ExitStack, url: str) -> list[tuple[Server, Output]]:
    def start() -> tuple[Server, Output]:
        variables = {"STORAGE_DATABASE_URL": url, "CELL_NAME": "bench",
                     "PYTHONPATH": str(ROOT / "tests")}  # fmt: skip
        args = ["tests/e2e/cell_app.py"]
        server = stack.enter_context(server_process(args, env=variables, ready_path="/db/health"))
        return server, Output(server)

    return [start(), start()]


def rss(server: Server) -> int:
    """The server process's resident memory, in bytes."""
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(server: Server) -> tuple[float, float]:
    """User and system CPU time of the server process: its main thread (the event loop), and
    all of its threads."""

    def ticks(stat: Path) -> int:
        fields = stat.read_text().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])

    pid, hertz = server.process.pid, os.sysconf("SC_CLK_TCK")
    main = ticks(Path(f"/proc/{pid}/task/{pid}/stat"))
    return main / hertz, ticks(Path(f"/proc/{pid}/stat")) / hertz


def add_part(http: httpx.Client, name: str) -> tuple[str, float, float]:
    sent = time.perf_counter()
    response = http.post("/parts/", json={"name": name}, headers=ADA)
    answered = time.perf_counter()
    if response.status_code != 201:
        raise RuntimeError(f"POST /parts/ answered {response.status_code}: {response.text}")
    return str(response.json()["id"]), sent, answered


def paced_writes(
    http: httpx.Client, count: int, interval: float, prefix: str, seconds: float | None = None
) -> Stamps:
    """``count`` parts posted ``interval`` s apart (start to start; at once when late), or
    fewer when ``seconds`` have passed."""
    stamps: Stamps = {}
    due = begun = time.perf_counter()
    for i in range(count):
        if seconds is not None and time.perf_counter() - begun >= seconds:
            break
        record_id, sent, answered = add_part(http, f"{prefix}-{i}")
        stamps[record_id] = (sent, answered)
        due += interval
        time.sleep(max(0.0, due - time.perf_counter()))
    return stamps


def closed_loop(base_url: str, writers: int, seconds: float) -> tuple[float, list[str]]:
    """POSTs per second of ``writers`` threads posting as fast as they can, and the ids."""

    def write(worker: int) -> list[str]:
        written = []
        with httpx.Client(base_url=base_url, timeout=30) as http:
            while time.perf_counter() < deadline:
                written.append(add_part(http, f"loop-{worker}-{len(written)}")[0])
        return written

    begun = time.perf_counter()
    deadline = begun + seconds
    with ThreadPoolExecutor(writers) as pool:
        ids = [i for written in pool.map(write, range(writers)) for i in written]
    return len(ids) / (time.perf_counter() - begun), ids


@dataclass
class Subscriber:
    """One streaming client of the change stream; stamps the arrival of each event's data."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    arrivals: dict[str, float] = field(default_factory=dict)  # record id -> perf_counter
    status: int | None = None
    error: BaseException | None = None
    ended: bool = False

    async def run(self, client: httpx.AsyncClient, path: str = STREAM) -> None:
        try:
            async with client.stream("GET", path) as response:
                self.status = response.status_code
                if response.status_code == 200:
                    await self._read(response)
                else:
                    await response.aread()
        except httpx.HTTPError as exc:
            self.error = exc
        # Ended by the server or failed, not cancelled by the bench: not waited for.
        self.ended = True
        self.ready.set()

    async def _read(self, response: httpx.Response) -> None:
        rest = b""
        async for chunk in response.aiter_bytes():
            now = time.perf_counter()
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                if line.startswith(b"data:"):
                    self.arrivals[json.loads(line[5:])["record_id"]] = now
                elif line.startswith(b": ready"):
                    self.ready.set()

    def latencies(self, stamps: Stamps) -> tuple[list[float], list[float]]:
        """(arrival - answer, arrival - sending) of each write of ``stamps`` that arrived."""
        got = [(self.arrivals[key], sent, answered) for key, (sent, answered) in stamps.items()
               if key in self.arrivals]  # fmt: skip
        return [at - answered for at, _, answered in got], [at - sent for at, sent, _ in got]


async def all_arrived(subscribers: list[Subscriber], keys: Iterable[str], timeout: float) -> None:
    """Wait until every subscriber has every key (or ``timeout`` s; missing ones are counted)."""
    wanted = set(keys)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if all(s.ended or wanted <= s.arrivals.keys() for s in subscribers):
            return
        await asyncio.sleep(0.05)


async def connect(
    client: httpx.AsyncClient, count: int, tasks: list[asyncio.Task[None]]
) -> list[Subscriber]:
    subscribers = [Subscriber() for _ in range(count)]
    tasks.extend(asyncio.create_task(s.run(client)) for s in subscribers)
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subscribers)), timeout=60)
    failed = [s for s in subscribers if s.status != 200 or s.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} streams failed: {failed[0].status} {failed[0].error}")
    return subscribers


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def stream_client(base_url: str, connections: int = 10) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    timeout = httpx.Timeout(30, read=None, pool=None)  # a stream may be quiet for long
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout)


async def delivery(stream_from: Server, write_to: Server, count: int, interval: float) -> str:
    tasks: list[asyncio.Task[None]] = []
    async with stream_client(str(stream_from.client.base_url)) as client:
        try:
            (subscriber,) = await connect(client, 1, tasks)
            stamps = await asyncio.to_thread(paced_writes, write_to.client, count, interval, "d")
            await all_arrived([subscriber], stamps, timeout=10)
        finally:
            await stop(tasks)
    after_answer, after_sent = subscriber.latencies(stamps)
    missing = len(stamps) - len(after_answer)
    note = f"  MISSING {missing}" if missing else ""
    return f"{percentiles(after_answer)}   sent: {percentiles(after_sent)}{note}"


def received(subscribers: list[Subscriber], keys: Iterable[str], what: str) -> str:
    wanted = set(keys)
    counts = [len(wanted & s.arrivals.keys()) for s in subscribers]
    short = sum(1 for c in counts if c < len(wanted))
    ended = sum(1 for s in subscribers if s.ended)
    summary = f"{what}: min {min(counts)} / max {max(counts)} of {len(wanted)} events"
    if short or ended:
        errors = {repr(s.error) for s in subscribers if s.error is not None}
        return f"{summary}; {short} subscribers MISSING events, {ended} streams ended {errors}"
    return f"{summary}; every subscriber got every event"


def megabytes(size: float) -> str:
    return f"{size / 2**20:.1f} MB"


async def fan_out(a: Server, count: int, rate: float, seconds: float, writers: int) -> None:
    base = str(a.client.base_url)
    alone, _ = await asyncio.to_thread(closed_loop, base, writers, 5.0)
    memory_before = rss(a)
    tasks: list[asyncio.Task[None]] = []
    async with stream_client(base, connections=count + 10) as client:
        try:
            begun = time.perf_counter()
            subscribers = await connect(client, count, tasks)
            connected_in = time.perf_counter() - begun
            await asyncio.sleep(1.0)  # settle
            memory_connected = rss(a)
            loop_cpu, server_cpu = cpu_seconds(a)
            cpu_here, begun = time.process_time(), time.perf_counter()
            stamps = await asyncio.to_thread(
                paced_writes, a.client, int(rate * seconds), 1 / rate, "fan", seconds
            )
            written_in = time.perf_counter() - begun
            await all_arrived(subscribers, stamps, timeout=15)
            wall = time.perf_counter() - begun
            loop_now, server_now = cpu_seconds(a)
            loop_cpu, server_cpu = loop_now - loop_cpu, server_now - server_cpu
            cpu_here = time.process_time() - cpu_here
            memory_loaded = rss(a)
            loaded, ids = await asyncio.to_thread(closed_loop, base, writers, 5.0)
            await all_arrived(subscribers, ids, timeout=15)
        finally:
            await stop(tasks)
    after_answer: list[float] = []
    for subscriber in subscribers:
        after_answer.extend(subscriber.latencies(stamps)[0])
    answers = [answered - sent for sent, answered in stamps.values()]
    print(f"  {count} streams connected in {connected_in:.2f} s")
    writes = len(stamps)
    print(f"  paced writer: {writes} of {int(rate * seconds)} writes in {written_in:.1f} s "
          f"({writes / written_in:.0f}/s of {rate:.0f}/s), all delivered {wall:.1f} s after "
          "the first")  # fmt: skip
    print(f"  POST round trip                     {percentiles(answers)}")
    print(f"  delivery, all subscribers           {percentiles(after_answer)}")
    print(f"  {received(subscribers, stamps, 'paced writes')}")
    print(f"  {received(subscribers, ids, 'closed-loop writes')}")
    each = (memory_connected - memory_before) / count
    print(f"  A's VmRSS: {megabytes(memory_before)} before, {megabytes(memory_connected)} with "
          f"{count} connected ({each / 1024:.1f} KB each), {megabytes(memory_loaded)} after "
          f"the paced writes")  # fmt: skip
    print(f"  CPU in those {wall:.1f} s: server A {server_cpu:.1f} s ({loop_cpu:.1f} s in its "
          f"event loop's thread), bench process {cpu_here:.1f} s")  # fmt: skip
    print(f"  write throughput, {writers} closed-loop writers: {alone:6.0f} POST/s without "
          f"subscribers, {loaded:6.0f} POST/s with {count}")  # fmt: skip


def core_inserts(url: str, seconds: float) -> float:
    """Single-row INSERT + COMMIT per second with SQLAlchemy Core, into a table like ``part``."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def pragmas(connection: Any, _: Any) -> None:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")

    metadata = MetaData()
    table = Table("bench_part", metadata, Column("id", Integer, primary_key=True),
                  Column("name", String(100), nullable=False),
                  Column("count", Integer, nullable=False))  # fmt: skip
    metadata.create_all(engine)
    try:
        count = 0
        with engine.connect() as connection:
            deadline = time.perf_counter() + seconds
            begun = time.perf_counter()
            while time.perf_counter() < deadline:
                connection.execute(table.insert().values(name=f"core-{count}", count=0))
                connection.commit()
                count += 1
            elapsed = time.perf_counter() - begun
        return count / elapsed
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def stop_servers(started: list[tuple[Server, Output]]) -> None:
    """SIGTERM each server (its streams must end for it to stop) and show what it printed."""
    for name, (server, output) in zip("AB", started, strict=True):
        begun = time.perf_counter()
        server.terminate()
        took = time.perf_counter() - begun
        printed = output.text()
        lines = [line for line in printed.splitlines() if line.strip()]
        print(f"server {name} stopped in {took:.2f} s (exit {server.process.returncode}), "
              f"{len(lines)} lines of output")  # fmt: skip
        for line in lines[:40]:
            print(f"    {name}| {line}")


def bench(backend: str, repeat: int, subscribers: int, rate: float, seconds: float) -> None:
    print(f"\n== {backend}: two servers on one database, writes go to A")
    with fresh_database(backend) as url, ExitStack() as stack:
        started = servers(stack, url)
        (a, _), (b, _) = started
        for i in range(20):  # warm up the write path
            add_part(a.client, f"warm-{i}")
        print(f"delivery latency, {repeat} writes {INTERVAL * 1000:.0f} ms apart")
        latency = asyncio.run(delivery(a, a, repeat, INTERVAL))
        print(f"  same server (stream on A)           {latency}")
        latency = asyncio.run(delivery(b, a, repeat, INTERVAL))
        print(f"  other server (stream on B)          {latency}")
        health = round_trips(lambda: a.client.get("/db/health"))
        print(f"baseline GET /db/health on A          {percentiles(health)}")
        print(f"fan-out: {subscribers} subscribers on A, {rate:.0f} writes/s for {seconds:.0f} s")
        asyncio.run(fan_out(a, subscribers, rate, seconds, writers=4))
        print(f"baseline Core INSERT + COMMIT         {core_inserts(url, 5.0):6.0f} /s")
        stop_servers(started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql", "mariadb"])  # fmt: skip
    parser.add_argument("--repeat", type=int, default=200, help="writes per latency run")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="fan-out writes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="fan-out writing time")
    args = parser.parse_args()
    for backend in args.backends:
        bench(backend, args.repeat, args.subscribers, args.rate, args.seconds)


if __name__ == "__main__":
    main()
