"""The example robot app (examples/robot_app) runs and serves its programs on every backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage import database
from support.runs import wait_for
from support.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def robot_app(backend: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> TestClient:
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.delenv("NOVA_API", raising=False)  # the local backend
    monkeypatch.chdir(tmp_path)  # backups of server databases go to ./backups
    from examples.robot_app.app import create_app

    return TestClient(create_app(database.get_database().url))


def test_templates_are_discovered_and_examples_seeded(robot_app: TestClient) -> None:
    templates = robot_app.get("/api/v2/program-templates").json()
    names = ["joint_moves", "palletizing", "pick_and_place", "tcp_calibration"]
    assert [t["name"] for t in templates] == names
    pick = robot_app.get("/api/v2/program-templates/pick_and_place").json()
    assert {"pick", "place", "motion"} <= set(pick["json_schema"]["properties"])
    assert "Pose" in pick["json_schema"]["$defs"]
    programs = robot_app.get("/api/v2/programs").json()
    assert [p["name"] for p in programs] == [
        "demo_moves", "demo_pick", "euro_pallet_4x3", "gripper_tcp"
    ]  # fmt: skip
    assert all(p["valid"] for p in programs)


def test_edit_a_program_and_back_up(robot_app: TestClient, tmp_path: Path) -> None:
    headers = {"X-User": "operator"}
    too_big = {"origin": {"x": 0, "y": 0, "z": 0}, "rows": 3, "columns": 5, "pitch_x": 300,
               "pitch_y": 260, "layer_height": 200}  # fmt: skip
    refused = robot_app.put(
        "/api/v2/programs/euro_pallet_4x3", json={"data": too_big}, headers=headers
    )
    assert refused.status_code == 422
    assert "1200 x 800" in refused.json()["detail"][0]["msg"]
    response = robot_app.put(
        "/api/v2/programs/euro_pallet_4x3",
        json={"data": {**too_big, "columns": 4}},
        headers=headers,
    )
    assert response.status_code == 200
    backup = robot_app.post("/api/v2/database/backup", headers=headers)
    assert backup.status_code == 201 and Path(backup.json()["path"]).is_file()


def test_seeding_happens_only_on_first_start(robot_app: TestClient) -> None:
    from examples.robot_app.app import seed_programs

    robot_app.delete("/api/v2/programs/demo_pick", headers={"X-User": "operator"})
    seed_programs(robot_app.app.state.programs)  # type: ignore[attr-defined]
    names = [p["name"] for p in robot_app.get("/api/v2/programs").json()]
    assert names == ["demo_moves", "euro_pallet_4x3", "gripper_tcp"]


@pytest.mark.parametrize(
    ("program", "result", "logged"),
    [
        pytest.param("demo_pick", 10, "cycle 10: pick at", id="pick-and-place"),
        pytest.param("demo_moves", None, "dry run, cycle 2 of 2", id="moves-without-nova"),
    ],
)
def test_example_programs_run_without_a_robot(
    robot_app: TestClient, program: str, result: int | None, logged: str
) -> None:
    with robot_app as client:
        run = client.post(f"/api/v2/programs/{program}/runs", headers={"X-User": "operator"})
        assert run.status_code == 202
        done = wait_for(client, run.json()["id"])
    assert (done["status"], done["backend"], done["result"]) == ("completed", "local", result)
    assert logged in done["logs"]


def test_runs_as_a_module() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "examples.robot_app", "--help"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "Serve the example robot app" in result.stdout
