"""The runner on the local backend: runs complete, fail, stop, queue, recover and keep their
output apart, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from programs import ProgramCall, ProgramStore, RunnerBackend, RunnerConfig, setup
from programs._cells import Instance
from programs._history import RunHistory
from programs._tables import ProgramRun
from storage.auditor import utcnow
from support.runs import Serve, audit_of, start, wait_for, wait_running
from support.testclient import TestClient

ADA = {"X-User": "ada"}
BOB = {"X-User": "bob"}


def test_a_run_completes_with_its_output_logs_and_result(
    run_store: ProgramStore, serve: Serve
) -> None:
    run_store.update_program("greet", {"name": "ada", "lines": 2}, actor="setup")
    with serve() as client:
        run = start(client, "greet")
        assert run["status"] == "queued" and run["started_by"] == "ada"
        done = wait_for(client, run["id"])
    assert done["status"] == "completed"
    assert done["output"] == "hello ada 0\nhello ada 1\n"
    assert "INFO programs.run.greet: greeted ada 0" in done["logs"]
    assert done["result"] == {"greeted": "ada", "lines": 2}
    assert done["parameters"] == {"name": "ada", "lines": 2, "delay": 0.0}
    assert done["error"] is None and done["traceback"] is None
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert (done["backend"], done["template_name"]) == ("local", "greet")
    assert audit_of(run["id"]) == [
        ("create", "ada", "queued"),
        ("update", "runner", "running"),
        ("update", "runner", "completed"),
    ]


def test_a_plain_function_runs_in_a_thread_with_its_log_records(serve: Serve) -> None:
    with serve() as client:
        done = wait_for(client, start(client, "greet_sync")["id"])
    assert done["status"] == "completed" and done["result"] == 1
    assert done["output"] == "hello world 0\n"
    assert "WARNING tests.runs: greeted world 0" in done["logs"]


def test_a_failing_run_records_the_error_and_traceback(serve: Serve) -> None:
    with serve() as client:
        failed = wait_for(client, start(client, "fail")["id"])
        assert start(client, "greet")["status"] == "queued"  # the slot is free again
    assert failed["status"] == "failed"
    assert failed["error"] == "ValueError: boom"
    assert "raise ValueError(params.message)" in failed["traceback"]
    assert failed["traceback"].rstrip().endswith("ValueError: boom")
    assert failed["output"] == "about to fail\n"
    assert failed["result"] is None


@pytest.mark.parametrize(
    ("program", "said"),
    [
        pytest.param("wait_async", "waiting\n", id="async-cancelled"),
        pytest.param("wait_sync", "waiting\nstopping\n", id="sync-cooperative"),
    ],
)
def test_stop_a_running_run(serve: Serve, program: str, said: str) -> None:
    with serve() as client:
        run = wait_running(client, start(client, program)["id"])
        response = client.post(f"/api/v2/runs/{run['id']}/stop", headers=BOB)
        assert response.status_code == 200, response.text
        stopped = response.json()
        again = client.post(f"/api/v2/runs/{run['id']}/stop", headers=BOB)
    assert stopped["status"] == "cancelled"
    assert (stopped["stopped_by"], stopped["error"]) == ("bob", "stopped by bob")
    assert stopped["output"] == said
    assert stopped["stop_requested_at"] <= stopped["finished_at"]
    assert again.status_code == 409
    assert "already ended (cancelled)" in again.json()["detail"]
    assert audit_of(run["id"])[-1] == ("update", "bob", "cancelled")


def test_a_plain_function_that_ignores_the_stop_ends_cancelled_when_it_returns(
    serve: Serve, run_store: ProgramStore
) -> None:
    # Long enough to be still running when the stop comes, also on a busy machine.
    run_store.create_program("stubborn_2s", "stubborn", {"seconds": 2})
    with serve(stop_wait=0.05) as client:
        run = wait_running(client, start(client, "stubborn_2s")["id"], say="not listening")
        response = client.post(f"/api/v2/runs/{run['id']}/stop", headers=BOB)
        assert response.status_code == 202
        assert response.json()["status"] == "running"
        assert response.json()["stop_requested_at"] is not None
        assert response.json()["stopped_by"] == "bob"
        done = wait_for(client, run["id"])
    assert done["status"] == "cancelled" and done["result"] is None


def test_a_second_start_is_refused_while_a_run_goes_on(serve: Serve) -> None:
    with serve() as client:
        first = wait_running(client, start(client, "wait_async")["id"])
        refused = client.post("/api/v2/programs/greet/runs", headers=ADA)
        assert refused.status_code == 409
        assert "already running" in refused.json()["detail"]
        client.post(f"/api/v2/runs/{first['id']}/stop", headers=BOB)
        assert wait_for(client, start(client, "greet")["id"])["status"] == "completed"
    assert client.get("/api/v2/runs", params={"status": "queued"}).json() == []


def test_queued_runs_wait_their_turn_and_can_be_cancelled(serve: Serve) -> None:
    with serve(when_busy="queue", max_queued=2) as client:
        first = wait_running(client, start(client, "wait_async")["id"])
        second, third = start(client, "greet"), start(client, "greet_sync")
        full = client.post("/api/v2/programs/greet/runs", headers=ADA)
        assert full.status_code == 409 and "queue is full" in full.json()["detail"]
        assert client.get(f"/api/v2/runs/{second['id']}").json()["status"] == "queued"
        cancelled = client.post(f"/api/v2/runs/{second['id']}/stop", headers=BOB)
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["started_at"] is None
        assert client.get(f"/api/v2/runs/{third['id']}").json()["status"] == "queued"
        client.post(f"/api/v2/runs/{first['id']}/stop", headers=BOB)
        assert wait_for(client, third["id"])["status"] == "completed"
    assert audit_of(second["id"]) == [("create", "ada", "queued"), ("update", "bob", "cancelled")]


def _left_behind(owner: str | None, status: str, heartbeat_age: float | None) -> int:
    now = utcnow()
    run = RunHistory().runs.insert(
        ProgramRun(
            program_name="greet", template_name="greet", backend="local", parameters={},
            status=status, owner=owner, slot=None,
            heartbeat_at=None if heartbeat_age is None else now - timedelta(seconds=heartbeat_age),
            started_at=now if status == "running" else None,
        ),
        actor="ada",
    )  # fmt: skip
    return run.id or 0


def test_runs_left_behind_by_dead_processes_end_when_the_app_starts(serve: Serve) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = Instance.this_process().host
    queued = _left_behind(None, "queued", None)
    killed = _left_behind(f"{host}:{gone.stdout.strip()}:1", "running", 0)
    silent = _left_behind("machine-b:4242:1", "running", 60)
    alive = _left_behind("machine-b:4343:1", "running", 0)
    with serve(stop_wait=0.1) as client:
        runs = {run["id"]: run for run in client.get("/api/v2/runs").json()}
        stop = client.post(f"/api/v2/runs/{alive}/stop", headers=BOB)
    assert runs[queued]["status"] == "failed"
    assert "it was not run when the cell started again" in runs[queued]["error"]
    assert runs[killed]["status"] == "failed"
    assert "its process no longer exists (a crash or a kill)" in runs[killed]["error"]
    assert runs[silent]["status"] == "failed"
    assert "(machine-b:4242:1) stopped answering; last heartbeat at" in runs[silent]["error"]
    assert runs[alive]["status"] == "running"  # another live process's run: left alone
    assert stop.status_code == 202  # recorded; the process running it stops it
    assert (stop.json()["stopped_by"], stop.json()["status"]) == ("bob", "running")


def test_shutdown_stops_every_run_and_records_it(serve: Serve) -> None:
    with serve(max_concurrent=2, when_busy="queue") as client:
        running = [
            wait_running(client, start(client, name)["id"]) for name in ("wait_async", "wait_sync")
        ]
        queued = start(client, "greet")
    after = TestClient(client.app)  # no lifespan: reads only
    for run in [*running, queued]:
        stored = after.get(f"/api/v2/runs/{run['id']}").json()
        assert stored["status"] == "cancelled"
        assert stored["error"] == "stopped: the app shut down"
        assert stored["stopped_by"] == "runner"
    assert after.get(f"/api/v2/runs/{running[1]['id']}").json()["output"] == "waiting\nstopping\n"


def test_shutdown_gives_up_on_a_plain_function_that_does_not_stop(serve: Serve) -> None:
    with serve(shutdown_timeout=0.1) as client:
        run = wait_running(client, start(client, "stubborn")["id"], say="not listening")
        begun = time.monotonic()
    assert time.monotonic() - begun < 0.4  # the function itself sleeps for 0.5 s
    stored = TestClient(client.app).get(f"/api/v2/runs/{run['id']}").json()
    assert stored["status"] == "cancelled"


def test_two_runs_at_once_keep_their_output_and_logs_apart(
    run_store: ProgramStore, serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    run_store.create_program("greet_a", "greet", {"name": "A", "lines": 5, "delay": 0.01})
    run_store.create_program("greet_b", "greet_sync", {"name": "B", "lines": 5, "delay": 0.01})
    with serve(max_concurrent=2, echo_output=False) as client:
        first, second = start(client, "greet_a"), start(client, "greet_b")
        print("outside any run")
        a, b = wait_for(client, first["id"]), wait_for(client, second["id"])
    assert a["output"] == "".join(f"hello A {i}\n" for i in range(5))
    assert b["output"] == "".join(f"hello B {i}\n" for i in range(5))
    assert "greeted A" in a["logs"] and "greeted B" not in a["logs"]
    assert "greeted B" in b["logs"] and "greeted A" not in b["logs"]
    printed = capsys.readouterr().out
    assert "outside any run" in printed and "hello A" not in printed  # echo_output=False


def test_logs_and_output_are_readable_while_the_run_goes_on(serve: Serve) -> None:
    with serve() as client:
        run = wait_running(client, start(client, "wait_async")["id"])
        assert run["finished_at"] is None
        listed = client.get("/api/v2/programs/wait_async/runs").json()[0]
        assert listed["status"] == "running"
        assert "output" not in listed and "logs" not in listed  # lists stay light
        assert client.get(f"/api/v2/runs/{run['id']}").json()["output"] == "waiting\n"
        client.post(f"/api/v2/runs/{run['id']}/stop", headers=BOB)


def test_what_a_backend_cannot_give_is_refused_before_the_run(serve: Serve) -> None:
    with serve() as client:
        refused = client.post("/api/v2/programs/needs_nova/runs", headers=ADA)
        assert refused.status_code == 409
        assert "needs NOVA (its parameter 'nova')" in refused.json()["detail"]
        unchanged = wait_for(client, start(client, "maybe_robot")["id"])
    assert (unchanged["status"], unchanged["result"]) == ("completed", "no robot")
    assert client.get("/api/v2/programs/needs_nova/runs").json() == []


class Simulator:
    """A backend of one's own: fills ``cell`` with a simulated one."""

    name = "simulator"
    resources = frozenset({"cell"})

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def run(self, call: ProgramCall) -> Any:
        class Cell:
            id = "sim"

        return await call.invoke(cell=Cell())


def test_a_backend_of_ones_own(run_store: ProgramStore) -> None:
    backend = Simulator()
    assert isinstance(backend, RunnerBackend)
    app = FastAPI()
    setup(app, run_store, runner=RunnerConfig(backend=backend))
    with TestClient(app) as client:
        done = wait_for(client, start(client, "maybe_robot")["id"])
        refused = client.post("/api/v2/programs/needs_nova/runs", headers=ADA)
    assert done["backend"] == "simulator" and done["result"] == "cell sim via simulator"
    assert refused.status_code == 409


def test_the_runner_from_python(run_store: ProgramStore) -> None:
    import anyio

    from programs import Runner

    async def main() -> list[str]:
        runner = Runner(run_store)
        async with runner.lifespan():
            run = await runner.start_run("greet", actor="script")
            done = await runner.wait_for_run(run.id or 0, timeout=10)
            waiting = await runner.start_run("wait_async", actor="script")
            await anyio.sleep(0.05)
            stopped, ended = await runner.stop_run(waiting.id or 0, actor="script")
            assert ended
        return [done.status, stopped.status, runner.list_runs(limit=1)[0][0].status]

    assert anyio.run(main) == ["completed", "cancelled", "cancelled"]
