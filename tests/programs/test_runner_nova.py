"""The NOVA backend with the real ``wandelbots-nova`` SDK against a fake NOVA on 127.0.0.1.

CI installs the ``nova`` extra, so nothing here is skipped there; without the SDK (a local
checkout installed with ``[dev]`` only) the module is skipped with the install hint.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    importlib.metadata.version("wandelbots-nova")
except importlib.metadata.PackageNotFoundError:
    if os.environ.get("CI"):
        raise
    pytest.skip(
        "wandelbots-nova is not installed: pip install -e '.[dev,nova]'", allow_module_level=True
    )

from fastapi import FastAPI

from programs import NovaSettings, ProgramStore, RunnerConfig, setup
from support.fake_nova import FakeNova, fake_nova
from support.runs import AWAY, HOME, audit_of, start, store_with_programs, wait_for, wait_running
from support.testclient import TestClient

TOKEN = "secret-token"
BOB = {"X-User": "bob"}

NovaApp = Callable[..., TestClient]


@pytest.fixture
def fake() -> Iterator[FakeNova]:
    with fake_nova() as server:
        yield server


@pytest.fixture
def store(sqlite_db: Path) -> ProgramStore:
    return store_with_programs()


@pytest.fixture
def nova_app(store: ProgramStore, fake: FakeNova) -> NovaApp:
    """``nova_app(host=None, **config)``: a client of an app whose runner uses the fake NOVA."""

    def make(host: str | None = None, **config: Any) -> TestClient:
        settings = NovaSettings(host=host or fake.url, access_token=TOKEN, app_name="tests")
        app = FastAPI()
        setup(app, store, runner=RunnerConfig(backend="nova", nova=settings, **config))
        return TestClient(app)

    return make


def states(fake: FakeNova, run_id: int) -> list[str]:
    """The states the backend published on NATS for one run."""
    messages = [m.json() for m in fake.nats_messages if m.subject == "nova.v2.cells.cell.programs"]
    return [m["state"] for m in messages if m["run"] == str(run_id)]


def no_connection_left(fake: FakeNova) -> bool:
    deadline = time.monotonic() + 3
    while fake.open_websockets and time.monotonic() < deadline:
        time.sleep(0.02)
    return fake.open_websockets == []


def test_a_motion_runs_on_nova(
    nova_app: NovaApp, fake: FakeNova, caplog: pytest.LogCaptureFixture
) -> None:
    # SDK 6.x logs a motion at DEBUG only (5.11 at INFO), and importing it sets the "nova"
    # logger to INFO: the run keeps DEBUG records here. The runner sets "programs.run" to its
    # log_level when that is unset; caplog puts both loggers back after the test.
    caplog.set_level(logging.DEBUG, logger="programs.run")
    with nova_app(log_level=logging.DEBUG) as client:
        caplog.set_level(logging.DEBUG, logger="nova")
        run = wait_for(client, start(client, "move")["id"])
    assert run["status"] == "completed", run["error"]
    assert run["backend"] == "nova"
    assert run["result"] == list(AWAY) == fake.robot.joints
    assert run["output"] == f"joints after motion {list(AWAY)}\n"
    assert " nova." in run["logs"]  # the SDK's own log records are the run's
    http = [(r.method, r.path) for r in fake.requests if r.method != "WS"]
    cell = "/api/v2/cells/cell"
    group = f"{cell}/controllers/ur/motion-groups/0@ur"
    assert ("GET", f"{cell}/controllers") in http
    assert ("GET", f"{group}/description") in http
    assert ("POST", f"{cell}/trajectory-planning/plan-trajectory") in http
    assert ("POST", f"{cell}/controllers/ur/trajectories") in http
    assert {r.authorization for r in fake.requests if r.method != "WS"} == {f"Bearer {TOKEN}"}
    sockets = {r.path for r in fake.requests if r.method == "WS"}
    assert {"/api/nats", f"{cell}/controllers/ur/execution/trajectory"} <= sockets
    assert states(fake, run["id"]) == ["PREPARING", "RUNNING", "COMPLETED"]
    published = [m.json() for m in fake.nats_messages][-1]
    assert (published["program"], published["app"]) == ("move", "tests")
    assert [status for _, _, status in audit_of(run["id"])] == ["queued", "running", "completed"]
    assert no_connection_left(fake)


def test_programs_without_a_robot_run_on_nova_unchanged(nova_app: NovaApp, fake: FakeNova) -> None:
    with nova_app() as client:
        greeted = wait_for(client, start(client, "greet")["id"])
        robot = wait_for(client, start(client, "maybe_robot")["id"])
    assert (greeted["status"], greeted["output"]) == ("completed", "hello world 0\n")
    assert robot["result"] == "cell cell via nova"
    assert [r.path for r in fake.requests] == ["/api/nats", "/api/nats"]  # no HTTP at all


def test_a_failing_program_on_nova(nova_app: NovaApp, fake: FakeNova) -> None:
    with nova_app() as client:
        run = wait_for(client, start(client, "fail")["id"])
    assert (run["status"], run["error"]) == ("failed", "ValueError: boom")
    assert states(fake, run["id"]) == ["PREPARING", "RUNNING", "FAILED"]
    failed = [m.json() for m in fake.nats_messages][-1]
    assert failed["error"] == "ValueError: boom" and failed["end_time"] is not None


def test_a_stop_during_a_motion_stops_it_and_closes_every_connection(
    nova_app: NovaApp, fake: FakeNova, store: ProgramStore
) -> None:
    store.create_program("forever", "move", {"repeat": 10_000})
    with nova_app() as client:
        run = wait_for(client, start(client, "forever")["id"], ("running",))
        deadline = time.monotonic() + 5
        while not any(r.path.endswith("/execution/trajectory") for r in fake.requests):
            assert time.monotonic() < deadline, "the motion never started"
            time.sleep(0.01)
        stopped = client.post(f"/api/v2/runs/{run['id']}/stop", headers=BOB)
        assert stopped.status_code == 200
    assert stopped.json()["status"] == "cancelled"
    assert stopped.json()["stopped_by"] == "bob"
    assert states(fake, run["id"]) == ["PREPARING", "RUNNING", "STOPPED"]
    assert no_connection_left(fake)


def test_a_stop_right_after_the_start_is_not_lost(nova_app: NovaApp, fake: FakeNova) -> None:
    with nova_app() as client:
        run = start(client, "wait_async")
        stopped = client.post(f"/api/v2/runs/{run['id']}/stop", headers=BOB)
        assert stopped.status_code == 200
        assert stopped.json()["status"] == "cancelled"
    assert no_connection_left(fake)


def test_a_stop_while_connecting_to_a_slow_nova_is_not_lost(
    nova_app: NovaApp, fake: FakeNova
) -> None:
    fake.nats_delay = 0.5
    with nova_app() as client:
        run = start(client, "wait_async")
        time.sleep(0.1)  # the backend is connecting now
        stopped = client.post(f"/api/v2/runs/{run['id']}/stop", headers=BOB)
        assert (stopped.status_code, stopped.json()["status"]) == (200, "cancelled")
    assert "RUNNING" not in states(fake, run["id"])
    assert no_connection_left(fake)


def test_a_program_that_honours_the_stop_is_stopped_on_nova(
    nova_app: NovaApp, fake: FakeNova
) -> None:
    """``ctx.raise_if_stopped()`` inside the program: NOVA hears STOPPED, not FAILED."""
    with nova_app() as client:
        run = wait_running(client, start(client, "wait_sync")["id"])
        stopped = client.post(f"/api/v2/runs/{run['id']}/stop", headers=BOB)
        assert stopped.status_code == 200
        body = stopped.json()
        assert (body["status"], body["error"]) == ("cancelled", "stopped by bob")
    assert states(fake, run["id"]) == ["PREPARING", "RUNNING", "STOPPED"]
    assert no_connection_left(fake)


def test_shutdown_stops_a_run_on_nova(nova_app: NovaApp, fake: FakeNova) -> None:
    with nova_app() as client:
        run = wait_running(client, start(client, "wait_async")["id"])
    stored = TestClient(client.app).get(f"/api/v2/runs/{run['id']}").json()
    assert (stored["status"], stored["error"]) == ("cancelled", "stopped: the app shut down")
    assert states(fake, run["id"])[-1] == "STOPPED"
    assert no_connection_left(fake)


def test_two_runs_on_nova_keep_their_output_apart(
    nova_app: NovaApp, fake: FakeNova, store: ProgramStore
) -> None:
    store.create_program("greet_a", "greet", {"name": "A", "lines": 5, "delay": 0.01})
    store.create_program("greet_b", "greet_sync", {"name": "B", "lines": 5, "delay": 0.01})
    with nova_app(max_concurrent=2) as client:
        first, second = start(client, "greet_a"), start(client, "greet_b")
        a, b = wait_for(client, first["id"]), wait_for(client, second["id"])
    assert a["output"] == "".join(f"hello A {i}\n" for i in range(5))
    assert b["output"] == "".join(f"hello B {i}\n" for i in range(5))


def test_an_unreachable_nova_fails_fast_with_a_clear_error(nova_app: NovaApp) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nobody listens once closed
    with nova_app(host=host) as client:
        began = time.monotonic()
        run = wait_for(client, start(client, "greet")["id"])
        took = time.monotonic() - began
    assert took < 5, took
    assert run["status"] == "failed"
    assert run["error"].startswith(f"BackendError: cannot connect to NOVA at {host}: ")
    assert "NoServersError" in run["error"]
    assert run["output"] == ""  # the program never ran


def test_the_example_app_moves_a_robot_on_nova(
    fake: FakeNova, sqlite_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOVA_API", fake.url)  # what a NOVA cell gives its apps
    monkeypatch.setenv("NOVA_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("CELL_NAME", "cell")
    from examples.robot_app.app import EXAMPLE_PROGRAMS, create_app

    with TestClient(create_app(f"sqlite:///{sqlite_db}")) as client:
        run = wait_for(client, start(client, "demo_moves")["id"])
    assert run["status"] == "completed", run["error"]
    waypoints = EXAMPLE_PROGRAMS["demo_moves"][1]["waypoints"]
    assert fake.robot.joints == waypoints[-1] == run["result"]
    assert "cycle 1 of 2" in run["logs"]
    assert {r.authorization for r in fake.requests if r.method != "WS"} == {f"Bearer {TOKEN}"}
    assert HOME != tuple(waypoints[-1])
