"""``machine-storage runs`` against a real server (``--server``) and its database (``--db``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.backends import fresh_database
from support.cli import json_out, run_cli
from support.servers import ROOT, server_process

BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql")]


@pytest.fixture(params=BACKENDS)
def robot_app(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """The example robot app served on a new database; yields (server URL, database URL)."""
    with fresh_database(request.param) as url:
        env = {"STORAGE_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
        with server_process(
            ["-m", "examples.robot_app"], env=env, ready_path="/api/v2/programs"
        ) as server:
            yield str(server.client.base_url), url


def test_start_follow_list_and_show_a_run(robot_app: tuple[str, str]) -> None:
    server, url = robot_app
    who = ["--server", server, "--user", "operator"]
    run = json_out(run_cli("runs", "start", "demo_moves", *who, "--json"))
    assert run["program_name"] == "demo_moves"
    followed = run_cli("runs", "logs", str(run["id"]), "--follow", "--json", *who)
    assert followed.returncode == 0, followed.stderr
    lines = [json.loads(line) for line in followed.stdout.splitlines()]
    assert lines and all(line["stream"] in ("output", "log") for line in lines)
    logs = run_cli("runs", "logs", str(run["id"]), "--json", "--server", server)
    assert [json.loads(line) for line in logs.stdout.splitlines()] == lines
    listed = json_out(run_cli("runs", "list", "--server", server, "--json"))
    assert [r["id"] for r in listed] == [run["id"]] and listed[0]["status"] == "completed"
    from_db = json_out(run_cli("runs", "list", "--db", url, "--json"))
    assert [(r["id"], r["status"]) for r in from_db] == [(run["id"], "completed")]
    shown = json_out(run_cli("runs", "show", str(run["id"]), "--db", url, "--json"))
    assert shown["program_name"] == "demo_moves" and shown["finished_at"]
    text = run_cli("runs", "show", str(run["id"]), "--server", server)
    assert text.returncode == 0 and "completed" in text.stdout


def test_runs_errors_have_exit_codes(robot_app: tuple[str, str]) -> None:
    server, url = robot_app
    missing = run_cli("runs", "show", "999", "--server", server)
    assert missing.returncode == 1 and "404" in missing.stderr
    assert run_cli("runs", "show", "999", "--db", url).returncode == 1
    unknown = run_cli("runs", "start", "no_such_program", "--server", server)
    assert unknown.returncode == 1 and "404" in unknown.stderr
    assert run_cli("runs", "list").returncode == 2
    assert run_cli("runs", "start", "demo_moves", "--db", url).returncode == 2
    assert run_cli("runs", "list", "--server", server, "-H", "no colon").returncode == 2
    down = run_cli("runs", "list", "--server", "http://127.0.0.1:1")
    assert down.returncode == 1 and "cannot reach" in down.stderr
    for command in (["runs", "--help"], ["worker", "--help"], ["runs", "logs", "--help"]):
        assert run_cli(*command).returncode == 0


def test_worker_executes_until_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'robot.db'}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "storage.cli", "worker", "examples.robot_app.programs"]
        + ["--database-url", url, "--cell", "cell-7"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert worker.stderr is not None
        for line in worker.stderr:
            if "serves cell 'cell-7'" in line:
                break
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
        worker.communicate()


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_and_follow_a_run_through_the_database(backend: str) -> None:
    """``runs stop --db`` reaches the server that executes the run; ``runs logs --follow --db``
    prints its lines until it has ended, the same lines as the server's logs route."""
    with fresh_database(backend) as url:
        env = {"STORAGE_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "tests")}
        with server_process(["tests/e2e/cell_app.py"], env=env, ready_path="/db/health") as server:
            http = server.client
            body = {"template_name": "chatty", "data": {"tick": 0.05}}
            assert http.post("/api/v2/programs/talk", json=body).status_code == 201
            run = http.post("/api/v2/programs/talk/runs").json()
            command = ["runs", "logs", str(run["id"]), "--follow", "--json", "--db", url]
            with subprocess.Popen(
                [sys.executable, "-m", "storage.cli", *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ) as follower:
                assert follower.stdout is not None and follower.stderr is not None
                first = json.loads(follower.stdout.readline())  # the run is printing
                assert first["stream"] == "output" and first["text"].startswith("line 0")
                stopped = json_out(run_cli("runs", "stop", str(run["id"]), "--db", url, "--json"))
                assert stopped["stopped_by"] == "anonymous"
                rest = follower.stdout.read()  # until the command ends with the run
                assert follower.wait(timeout=60) == 0, follower.stderr.read()
            followed = [first, *map(json.loads, rest.splitlines())]
            ended = http.get(f"/api/v2/runs/{run['id']}").json()
            assert ended["status"] == "cancelled"
            assert followed == http.get(f"/api/v2/runs/{run['id']}/logs?limit=10000").json()
            again = run_cli("runs", "stop", str(run["id"]), "--db", url)
            assert again.returncode == 1 and "already ended" in again.stderr
