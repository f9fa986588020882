"""Several app servers on one database: how fast starts, stops and output cross between them,
and what an idle runner costs the database.

Usage::

    .venv/bin/python bench/cells.py                    # SQLite file and PostgreSQL, ~1 minute
    .venv/bin/python bench/cells.py --backends sqlite --repeat 30

Per backend, two uvicorn servers on one new database (a temporary SQLite file, or a database
created on the PostgreSQL server and dropped after): A executes the cell's programs, B serves
the API only (``PROGRAMS_RUNNER_EXECUTE=0``). Each program prints ``time.time()``, so the
client reads latencies off the printed stamps (one machine, one clock):

- *start -> first line*: from just before ``POST /programs/{name}/runs`` to the program's first
  stamp, posted to A (same server) and to B (the other server executes it);
- *stop across servers*: ``POST /runs/{id}/stop`` sent to B for a run A executes, until B reads
  it ``cancelled``;
- *log lag across servers*: a program on A prints a stamp every 50 ms; B's
  ``GET /runs/{id}/logs?after=N`` is polled every 10 ms, lag = arrival - stamp;
- *idle database load*: statements per second of one idle runner (counted by a SQLAlchemy
  event in this process, 10 s).

Baselines measured in the same run: ``GET /db/health`` round trip on A (a trivial endpoint
that queries the database), and a plain SQLAlchemy Core ``SELECT 1``.
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
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import httpx
from sqlalchemy import create_engine, event, text

from support.backends import fresh_database
from support.servers import Server, server_process

ROOT = Path(__file__).resolve().parent.parent
ADA = {"X-User": "bench"}


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (
        f"{statistics.median(ordered) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  (n={len(values)})"
    )


def servers(stack: ExitStack, url: str) -> tuple[Server, Server]:
    def start(**env: str) -> Server:
        variables = {"STORAGE_DATABASE_URL": url, "CELL_NAME": "bench",
                     "PYTHONPATH": str(ROOT / "tests"), **env}  # fmt: skip
        args = ["tests/e2e/cell_app.py"]
        return stack.enter_context(server_process(args, env=variables, ready_path="/db/health"))

    return start(), start(PROGRAMS_RUNNER_EXECUTE="0")


def wait_final(http: httpx.Client, run_id: int) -> dict[str, Any]:
    while True:
        run: dict[str, Any] = http.get(f"/api/v2/runs/{run_id}").json()
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        time.sleep(0.005)


def first_line_lag(post_to: httpx.Client, read: httpx.Client, repeat: int) -> list[float]:
    lags = []
    for _ in range(repeat):
        begun = time.time()
        run = post_to.post("/api/v2/programs/once/runs", headers=ADA).json()
        done = wait_final(read, run["id"])
        lags.append(float(done["output"].split("\n")[0]) - begun)
    return lags


def stop_latency(a: httpx.Client, b: httpx.Client, repeat: int) -> list[float]:
    latencies = []
    for _ in range(repeat):
        run = a.post("/api/v2/programs/forever/runs", headers=ADA).json()
        while not a.get(f"/api/v2/runs/{run['id']}").json()["output"]:
            time.sleep(0.005)
        begun = time.monotonic()
        b.post(f"/api/v2/runs/{run['id']}/stop", headers=ADA)
        wait_final(b, run["id"])
        latencies.append(time.monotonic() - begun)
    return latencies


def log_lag(a: httpx.Client, b: httpx.Client, seconds: float) -> list[float]:
    run = a.post("/api/v2/programs/forever/runs", headers=ADA).json()
    lags: list[float] = []
    after, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        lines = b.get(f"/api/v2/runs/{run['id']}/logs", params={"after": after}).json()
        now = time.time()
        for line in lines:
            if line["stream"] == "output" and line["text"].strip():
                lags.append(now - float(line["text"]))
            after = line["seq"]
        time.sleep(0.01)
    b.post(f"/api/v2/runs/{run['id']}/stop", headers=ADA)
    return lags


def round_trips(call: Callable[[], object], repeat: int = 200) -> list[float]:
    times = []
    for _ in range(repeat):
        begun = time.perf_counter()
        call()
        times.append(time.perf_counter() - begun)
    return times


def idle_statements(url: str, seconds: float) -> float:
    """Statements per second of one idle runner (in this process)."""
    from programs import Runner, RunnerConfig
    from programs.extension import setup
    from storage import database

    database.set_database_url(url)
    store = setup(None, "support.cell_programs", entry_points=False)
    count = 0

    def counted(*_: Any) -> None:
        nonlocal count
        count += 1

    async def idle() -> None:
        runner = Runner(store, RunnerConfig(cell="idle"))
        async with runner.lifespan():
            await asyncio.sleep(1.0)  # settle: registration and the first heartbeat
            event.listen(database.get_engine(), "before_cursor_execute", counted)
            await asyncio.sleep(seconds)
            event.remove(database.get_engine(), "before_cursor_execute", counted)

    asyncio.run(idle())
    database.get_database().dispose()
    return count / seconds


def bench(backend: str, repeat: int) -> None:
    print(f"\n== {backend}: two servers, A executes, B serves the API only")
    with fresh_database(backend) as url, ExitStack() as stack:
        a, b = (server.client for server in servers(stack, url))
        for name, template, data in (("once", "stamps", {"lines": 1}),
                                     ("forever", "stamps", {"lines": 10**9})):  # fmt: skip
            body = {"template_name": template, "data": data}
            a.post(f"/api/v2/programs/{name}", json=body, headers=ADA).raise_for_status()
        first_line_lag(a, a, 3)  # warm up both paths
        first_line_lag(b, a, 3)
        print(f"start -> first line, same server   {percentiles(first_line_lag(a, a, repeat))}")
        print(f"start -> first line, other server  {percentiles(first_line_lag(b, a, repeat))}")
        print(f"stop across servers                {percentiles(stop_latency(a, b, repeat))}")
        print(f"log lag across servers             {percentiles(log_lag(a, b, 5.0))}")
        health = round_trips(lambda: a.get("/db/health"))
        print(f"baseline GET /db/health on A       {percentiles(health)}")
        engine = create_engine(url)
        with engine.connect() as connection:
            select_one = round_trips(lambda: connection.execute(text("SELECT 1")).scalar())
        engine.dispose()
        print(f"baseline Core SELECT 1             {percentiles(select_one)}")
        rate = idle_statements(url, 10.0)
        print(f"idle runner: {rate:.1f} statements/s (heartbeats, polls, expiry checks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql", "mariadb"])  # fmt: skip
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    for backend in args.backends:
        bench(backend, args.repeat)


if __name__ == "__main__":
    main()
