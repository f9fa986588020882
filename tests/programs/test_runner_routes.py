"""Every run route and status code, through the app, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException

from programs import ProgramRegistry, ProgramStore, RunnerConfig, setup
from storage.http import RouteAuth
from support.runs import Serve, start, wait_for, wait_running
from support.testclient import TestClient

ADA = {"X-User": "ada"}


def test_start_answers_202_with_the_run_and_where_to_find_it(serve: Serve) -> None:
    with serve() as client:
        response = client.post("/api/v2/programs/greet/runs", headers=ADA)
        assert response.status_code == 202
        run = response.json()
        assert response.headers["Location"].endswith(f"/api/v2/runs/{run['id']}")
        assert {
            "id",
            "program_name",
            "status",
            "started_at",
            "finished_at",
            "error",
            "logs",
        } <= set(run)
        assert (run["program_name"], run["status"], run["logs"]) == ("greet", "queued", "")
        wait_for(client, run["id"])


@pytest.mark.parametrize(
    ("path", "headers", "status", "detail"),
    [
        pytest.param("/programs/nothing/runs", ADA, 404, "program 'nothing' not found", id="404"),
        pytest.param("/programs/needs_nova/runs", ADA, 409, "needs NOVA", id="needs-nova"),
    ],
)
def test_start_refusals(
    serve: Serve, path: str, headers: dict[str, str], status: int, detail: str
) -> None:
    with serve() as client:
        response = client.post(f"/api/v2{path}", headers=headers)
    assert response.status_code == status
    assert detail in response.json()["detail"]


def test_start_refuses_stored_data_that_no_longer_matches(run_store: ProgramStore) -> None:
    run_store.instances.update("greet", data={"lines": "many"}, actor="test")
    app = FastAPI()
    setup(app, run_store)
    with TestClient(app) as client:
        response = client.post("/api/v2/programs/greet/runs", headers=ADA)
    assert response.status_code == 422
    assert "does not match template 'greet'" in response.json()["detail"]


def test_start_refuses_a_template_gone_from_the_code(run_store: ProgramStore) -> None:
    gone = ProgramStore(ProgramRegistry())
    gone.sync()
    app = FastAPI()
    setup(app, gone)
    with TestClient(app) as client:
        response = client.post("/api/v2/programs/greet/runs", headers=ADA)
    assert response.status_code == 409
    assert "no longer available" in response.json()["detail"]


def test_start_without_the_lifespan_says_how_to_run_it(serve: Serve) -> None:
    client = serve()  # not entered: the runner never started
    response = client.post("/api/v2/programs/greet/runs", headers=ADA)
    assert response.status_code == 409
    assert "not running" in response.json()["detail"]
    assert client.get("/api/v2/runs").json() == []


def test_lists_are_newest_first_filtered_and_paged(serve: Serve) -> None:
    with serve() as client:
        ids = [wait_for(client, start(client, name)["id"])["id"] for name in
               ("greet", "fail", "greet", "greet_sync")]  # fmt: skip
        every = client.get("/api/v2/runs")
        assert [run["id"] for run in every.json()] == ids[::-1]
        assert every.headers["X-Total-Count"] == "4"
        page = client.get("/api/v2/runs", params={"limit": 2, "offset": 1})
        assert [run["id"] for run in page.json()] == [ids[2], ids[1]]
        assert page.headers["X-Total-Count"] == "4"
        failed = client.get("/api/v2/runs", params={"status": "failed"}).json()
        assert [run["id"] for run in failed] == [ids[1]]
        both = client.get("/api/v2/runs", params=[("status", "failed"), ("status", "completed")])
        assert both.headers["X-Total-Count"] == "4"
        greets = client.get("/api/v2/programs/greet/runs", params={"status": "completed"})
        assert [run["id"] for run in greets.json()] == [ids[2], ids[0]]
        assert greets.headers["X-Total-Count"] == "2"
        assert client.get("/api/v2/programs/nothing/runs").json() == []


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"limit": 0}, id="limit-0"),
        pytest.param({"limit": 501}, id="limit-too-big"),
        pytest.param({"offset": -1}, id="negative-offset"),
        pytest.param({"status": "paused"}, id="unknown-status"),
    ],
)
def test_list_parameters_are_checked(serve: Serve, params: dict[str, Any]) -> None:
    assert serve().get("/api/v2/runs", params=params).status_code == 422


def test_read_one_run(serve: Serve) -> None:
    with serve() as client:
        run = wait_for(client, start(client, "greet")["id"])
        assert client.get(f"/api/v2/runs/{run['id']}").json() == run
        assert client.get("/api/v2/runs/999999").status_code == 404
        assert client.get("/api/v2/runs/0").status_code == 422
        assert client.get("/api/v2/runs/abc").status_code == 422


def test_stop_status_codes(serve: Serve, run_store: ProgramStore) -> None:
    # Margins a busy machine keeps: a run that honours the stop ends well within stop_wait,
    # and the stubborn one goes on for longer than that after it.
    run_store.create_program("stubborn_3s", "stubborn", {"seconds": 3})
    with serve(stop_wait=1.0) as client:
        done = wait_for(client, start(client, "greet")["id"])
        assert client.post(f"/api/v2/runs/{done['id']}/stop", headers=ADA).status_code == 409
        assert client.post("/api/v2/runs/999999/stop", headers=ADA).status_code == 404
        running = wait_running(client, start(client, "wait_async")["id"])
        stopped = client.post(f"/api/v2/runs/{running['id']}/stop")  # as seed 000's clients
        assert stopped.status_code == 200
        assert client.get(f"/api/v2/runs/{running['id']}").json()["stopped_by"] == "anonymous"
        stubborn = wait_running(client, start(client, "stubborn_3s")["id"], say="not listening")
        assert client.post(f"/api/v2/runs/{stubborn['id']}/stop", headers=ADA).status_code == 202
        wait_for(client, stubborn["id"])


def test_the_routes_have_typed_schemas(serve: Serve) -> None:
    schema = serve().get("/openapi.json").json()
    start_op = schema["paths"]["/api/v2/programs/{program_name}/runs"]["post"]
    body = start_op["responses"]["202"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/RunRead"}
    assert {"400", "404", "409", "422"} <= set(start_op["responses"])
    stop_op = schema["paths"]["/api/v2/runs/{run_id}/stop"]["post"]
    assert {"200", "202", "404", "409"} <= set(stop_op["responses"])
    listed = schema["paths"]["/api/v2/runs"]["get"]["responses"]["200"]["content"]
    summary = {"$ref": "#/components/schemas/RunSummary"}
    assert listed["application/json"]["schema"]["items"] == summary
    lines = schema["paths"]["/api/v2/runs/{run_id}/logs"]["get"]["responses"]["200"]["content"]
    assert lines["application/json"]["schema"]["items"] == {
        "$ref": "#/components/schemas/RunLineRead"
    }
    run_read = schema["components"]["schemas"]["RunRead"]
    assert run_read["properties"]["status"] == {"$ref": "#/components/schemas/RunStatus"}


def test_the_routes_take_the_auth_guards(run_store: ProgramStore) -> None:
    def deny() -> None:
        raise HTTPException(status_code=403)

    app = FastAPI()
    setup(app, run_store, auth=RouteAuth(write=[Depends(deny)]), runner=RunnerConfig())
    with TestClient(app) as client:
        assert client.post("/api/v2/programs/greet/runs", headers=ADA).status_code == 403
        assert client.post("/api/v2/runs/1/stop", headers=ADA).status_code == 403
        assert client.get("/api/v2/runs").status_code == 200


def test_no_runner_no_run_routes(run_store: ProgramStore) -> None:
    app = FastAPI()
    setup(app, run_store, runner=False)
    client = TestClient(app)
    assert client.get("/api/v2/runs").status_code == 404
    assert not hasattr(app.state, "runner")
