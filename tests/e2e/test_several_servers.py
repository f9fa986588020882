"""Several app servers (real uvicorn processes) on one database: one program per cell at a time
whichever server took the request, stops and output from any server, leases that outlive a
``kill -9``, API-only servers with a worker. On one SQLite file, PostgreSQL and MariaDB."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest

from support.servers import ROOT, Server, server_process

FINAL = ("completed", "failed", "cancelled")
LEASE = 3.0  # seconds: short, so that the tests of dead servers are quick
ADA = {"X-User": "ada"}


Start = Callable[..., Server]


@pytest.fixture
def start_server(database_url: str) -> Iterator[Start]:
    """``start_server(cell="default", **env)`` runs one more app server on the database."""
    with ExitStack() as stack:

        def start(cell: str = "default", **env: str) -> Server:
            variables = {
                "STORAGE_DATABASE_URL": database_url,
                "CELL_NAME": cell,
                "PROGRAMS_RUNNER_LEASE_TIMEOUT": str(LEASE),
                "PYTHONPATH": str(ROOT / "tests"),
                **env,
            }
            return stack.enter_context(
                server_process(["tests/e2e/cell_app.py"], env=variables, ready_path="/db/health")
            )

        yield start


def create_program(http: httpx.Client, name: str, template: str, **data: Any) -> None:
    body = {"template_name": template, "data": data}
    response = http.post(f"/api/v2/programs/{name}", json=body, headers=ADA)
    assert response.status_code == 201, response.text


def start_run(http: httpx.Client, program: str) -> dict[str, Any]:
    response = http.post(f"/api/v2/programs/{program}/runs", headers=ADA)
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


def wait_run(
    http: httpx.Client,
    run_id: int,
    until: Callable[[dict[str, Any]], bool] = lambda run: run["status"] in FINAL,
    timeout: float = 20.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = http.get(f"/api/v2/runs/{run_id}").json()
        if until(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not get there: {run}")
        time.sleep(0.02)


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_one_program_per_cell_whichever_server_takes_the_start(start_server: Start) -> None:
    servers = [start_server(PROGRAMS_RUNNER_WHEN_BUSY="queue") for _ in range(2)]
    a, b = (server.client for server in servers)
    create_program(a, "short", "span", seconds=0.05)
    with ThreadPoolExecutor(8) as pool:
        started = list(pool.map(lambda i: start_run((a, b)[i % 2], "short"), range(16)))
    ids = sorted(run["id"] for run in started)
    runs = [wait_run(a, run_id) for run_id in ids]
    assert [run["status"] for run in runs] == ["completed"] * 16
    spans = sorted((moment(r["started_at"]), moment(r["finished_at"]), r["id"]) for r in runs)
    for (_, end, _), (begin, _, _) in zip(spans, spans[1:], strict=False):
        assert end <= begin, "two programs ran in the cell at once"
    assert [run_id for _, _, run_id in spans] == ids  # the queue ran in order, each once
    assert {run["owner"] for run in runs} <= {run["runner"] for run in started}
    assert len({run["output"] for run in runs}) == 16  # each printed its own start and end


def test_a_second_start_is_refused_on_every_server(start_server: Start) -> None:
    a, b = start_server().client, start_server().client
    create_program(a, "forever", "chatty")
    running = start_run(a, "forever")
    for http in (a, b):
        refused = http.post("/api/v2/programs/forever/runs", headers=ADA)
        assert refused.status_code == 409
        assert "already running in cell 'default'" in refused.json()["detail"]
    b.post(f"/api/v2/runs/{running['id']}/stop", headers=ADA)


def test_stop_and_output_from_the_other_server(start_server: Start) -> None:
    a, b = start_server().client, start_server().client
    create_program(a, "forever", "chatty", tick=0.05)
    run = start_run(a, "forever")
    live = wait_run(b, run["id"], until=lambda r: "line 3\n" in r["output"])
    assert live["status"] == "running" and live["finished_at"] is None
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while len(lines) < 3 and time.monotonic() < deadline:  # written every flush_interval
        lines = b.get(f"/api/v2/runs/{run['id']}/logs", params={"stream": "output"}).json()
    assert [line["text"] for line in lines[:3]] == ["line 0\n", "line 1\n", "line 2\n"]
    after = b.get(f"/api/v2/runs/{run['id']}/logs", params={"after": lines[1]["seq"]}).json()
    assert after[0]["seq"] == lines[2]["seq"]
    for http in (a, b):  # whichever server runs it, the other one stops it
        if http.get(f"/api/v2/runs/{run['id']}").json()["owner"] != live["owner"]:
            break
    began = time.monotonic()
    stop = http.post(f"/api/v2/runs/{run['id']}/stop", headers={"X-User": "bob"})
    stopped = wait_run(http, run["id"])
    assert time.monotonic() - began < 1.0
    assert stop.status_code in (200, 202)
    assert (stopped["status"], stopped["stopped_by"], stopped["error"]) == (
        "cancelled", "bob", "stopped by bob"
    )  # fmt: skip
    assert stopped["output"].startswith("line 0\nline 1\nline 2\nline 3\n")


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        pytest.param("", "its process no longer exists", id="same-host"),
        pytest.param("machine-b", "stopped answering; last heartbeat at", id="other-machine"),
    ],
)
def test_a_killed_server_frees_the_cell(start_server: Start, label: str, reason: str) -> None:
    survivor = start_server(cell="other").client  # ends what dead servers leave, in any cell
    doomed = start_server(cell="k", CELL_APP_LABEL=label)
    create_program(doomed.client, "forever", "chatty")
    run = wait_run(
        doomed.client, start_run(doomed.client, "forever")["id"], lambda r: "line 1" in r["output"]
    )
    doomed.kill()
    began = time.monotonic()
    failed = wait_run(survivor, run["id"], timeout=LEASE + 10)
    assert time.monotonic() - began < LEASE + 5
    assert failed["status"] == "failed" and reason in failed["error"]
    replacement = start_server(cell="k").client
    again = wait_run(replacement, start_run(replacement, "forever")["id"], lambda r: r["output"])
    assert again["status"] == "running"
    replacement.post(f"/api/v2/runs/{again['id']}/stop", headers=ADA)


def test_a_clean_shutdown_leaves_the_other_servers_runs_alone(start_server: Start) -> None:
    servers = [start_server(), start_server()]
    http = servers[0].client
    create_program(http, "forever", "chatty")
    run = wait_run(http, start_run(http, "forever")["id"], lambda r: r["status"] == "running")
    pid = run["owner"].split(":")[1]
    owner = next(server for server in servers if str(server.process.pid) == pid)
    other = next(server for server in servers if server is not owner)
    other.terminate()
    time.sleep(2 * LEASE / 5)  # two heartbeats of the survivor
    still = owner.client.get(f"/api/v2/runs/{run['id']}").json()
    assert (still["status"], still["stopped_by"]) == ("running", None)
    owner.client.post(f"/api/v2/runs/{run['id']}/stop", headers=ADA)


def test_an_api_only_server_and_a_worker(start_server: Start, database_url: str) -> None:
    api = start_server(cell="w", PROGRAMS_RUNNER_EXECUTE="0").client
    create_program(api, "short", "span", seconds=0.05)
    refused = api.post("/api/v2/programs/short/runs", headers=ADA)
    assert refused.status_code == 409 and "start a worker" in refused.json()["detail"]
    worker_env = {
        "STORAGE_DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT / "tests"),
        "PROGRAMS_RUNNER_LEASE_TIMEOUT": str(LEASE),
    }
    args = ["-m", "programs.worker", "support.cell_programs", "--cell", "w"]
    with _worker(args, worker_env) as worker:
        done = [wait_run(api, start_run(api, "short")["id"]) for _ in range(3)]
        assert [run["status"] for run in done] == ["completed"] * 3
        assert {run["owner"].split(":")[1] for run in done} == {str(worker.process.pid)}
        assert all(run["runner"] != run["owner"] for run in done)


@contextmanager
def _worker(args: list[str], env: dict[str, str]) -> Iterator[Server]:
    with server_process(args, env=env, ready_path=None) as worker:
        deadline = time.monotonic() + 30
        while not _worker_registered(env["STORAGE_DATABASE_URL"], "w"):
            if worker.process.poll() is not None or time.monotonic() > deadline:
                worker.process.kill()
                raise RuntimeError(f"the worker did not come up:\n{worker.output()}")
            time.sleep(0.1)
        yield worker


def _worker_registered(url: str, cell: str) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT COUNT(*) FROM program_runners WHERE cell = :cell AND executes"),
                {"cell": cell},
            ).scalar()
        return bool(found)
    except Exception:
        return False
    finally:
        engine.dispose()


def test_uvicorn_workers_start_at_once_on_a_new_database(database_url: str) -> None:
    env = {
        "STORAGE_DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT / "tests"),
        "PROGRAMS_RUNNER_WHEN_BUSY": "queue",
    }
    args = ["-m", "uvicorn", "e2e.cell_app:create_app", "--factory", "--workers", "3"]
    with server_process(args, env=env, ready_path="/db/health") as server:
        http = server.client
        create_program(http, "short", "span", seconds=0.02)
        with ThreadPoolExecutor(6) as pool:
            started = list(pool.map(lambda _: start_run(http, "short"), range(12)))
        runs = [wait_run(http, run["id"]) for run in sorted(started, key=lambda r: r["id"])]
        assert [run["status"] for run in runs] == ["completed"] * 12
        spans = sorted((moment(r["started_at"]), moment(r["finished_at"])) for r in runs)
        assert all(end <= begin for (_, end), (begin, _) in zip(spans, spans[1:], strict=False))
        server.terminate()
        assert "Traceback" not in server.output()
