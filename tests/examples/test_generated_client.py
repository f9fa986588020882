"""A client generated from the example machine app's document with openapi-python-client
(as docs/clients.md shows), used against the app under uvicorn: the page's example runs as it
is, and the client parses what the server answers, errors and downloads included. The example
apps' operation ids are unique."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.servers import ROOT, Server, machine_app, served

DOC = (ROOT / "docs" / "clients.md").read_text()
PACKAGE = "machine_client"
METHODS = {"get", "put", "post", "delete", "patch"}


def _block(language: str) -> str:
    found = re.search(rf"```{language}\n(.*?)```", DOC, re.DOTALL)
    assert found, f"docs/clients.md has no {language} block"
    return found.group(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("client-app") / "machine.db"
    with machine_app(f"sqlite:///{path}") as server:
        yield server


@pytest.fixture(scope="module")
def client_package(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The generated package's folder, importable while the module's tests run."""
    folder = tmp_path_factory.mktemp("generated")
    (folder / "openapi.json").write_text(server.client.get("/openapi.json").text)
    (folder / "client-config.yaml").write_text(_block("yaml"))
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "openapi-python-client"),
        "generate",
        "--path=openapi.json",
        "--config=client-config.yaml",
        "--meta=none",
        f"--output-path={PACKAGE}",
    ]
    # The generator formats its output with ruff, found on the PATH.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output and "WARNING" not in output, output  # nothing left out
    sys.path.insert(0, str(folder))
    try:
        yield folder / PACKAGE
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


@pytest.fixture
def api(server: Server, client_package: Path) -> Any:
    from machine_client import Client

    with Client(base_url=str(server.client.base_url), timeout=10) as client:
        yield client


def test_the_docs_example_runs_against_the_server(server: Server, client_package: Path) -> None:
    example = _block("python").replace("http://127.0.0.1:8000", str(server.client.base_url))
    exec(compile(example, "docs/clients.md", "exec"), {})


def test_the_client_parses_lists_errors_and_downloads(api: Any) -> None:
    from machine_client.api.db import download_export, list_audit_log
    from machine_client.api.machines import create_machine, list_machines
    from machine_client.api.programs import get_program, list_programs
    from machine_client.api.workcells import create_workcell, get_workcell, restore_workcell
    from machine_client.models import (
        ErrorBody,
        MachineCreate,
        MachineRead,
        ProgramRead,
        ValidationErrorBody,
        WorkcellCreate,
    )

    cell = create_workcell.sync(client=api, body=WorkcellCreate(name="Cell B"), x_user="ada")
    duplicate = create_workcell.sync_detailed(
        client=api, body=WorkcellCreate(name="Cell B"), x_user="ada"
    )
    assert duplicate.status_code == 409 and isinstance(duplicate.parsed, ErrorBody)
    missing = get_workcell.sync_detailed(999_999, client=api)
    assert missing.status_code == 404 and isinstance(missing.parsed, ErrorBody)
    assert restore_workcell.sync_detailed(999_999, client=api, x_user="ada").status_code == 404
    current = get_workcell.sync_detailed(cell.id, client=api)
    unchanged = get_workcell.sync_detailed(
        cell.id, client=api, if_none_match=current.headers["ETag"]
    )
    assert unchanged.status_code == 304 and unchanged.headers["ETag"] == current.headers["ETag"]

    for serial, payload in (("R-1", 5.0), ("R-2", 12.5), ("R-3", 20.0)):
        body = MachineCreate(serial=serial, workcell_id=cell.id, payload_kg=payload)
        assert isinstance(create_machine.sync(client=api, body=body, x_user="ada"), MachineRead)
    refused = create_machine.sync_detailed(client=api, body=MachineCreate(serial=" "), x_user="a")
    assert refused.status_code == 422 and isinstance(refused.parsed, ValidationErrorBody)
    heavy = list_machines.sync_detailed(
        client=api, payload_kg_gte=10, workcell_id=cell.id, sort="-payload_kg", count=True
    )
    assert [machine.serial for machine in heavy.parsed] == ["R-3", "R-2"]
    assert heavy.headers["X-Total-Count"] == "2"
    chosen = list_machines.sync(client=api, serial_in="R-1,R-3", commissioned_at_isnull=True)
    assert sorted(machine.serial for machine in chosen) == ["R-1", "R-3"]
    bad_filter = list_machines.sync_detailed(client=api, id_in="1,x")
    assert bad_filter.status_code == 422 and isinstance(bad_filter.parsed, ValidationErrorBody)

    audit = list_audit_log.sync_detailed(client=api, component="machines")
    assert len(audit.parsed) == 3 and audit.headers["X-Total-Count"] == "3"
    programs = list_programs.sync(client=api)
    assert programs and all(isinstance(program, ProgramRead) for program in programs)
    assert isinstance(get_program.sync(programs[0].name, client=api), ProgramRead)
    export = download_export.sync(client=api)
    assert export.payload.read(2) == b"PK"  # a zip file


def test_operation_ids_are_unique_in_the_example_apps(server: Server, tmp_path: Path) -> None:
    env = {"STORAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'robot.db'}", "PYTHONPATH": str(ROOT)}
    with served(["-m", "examples.robot_app"], env=env, ready_path="/db/health") as robot:
        specs = {"machine_app": server.client.get("/openapi.json").json()}
        specs["robot_app"] = robot.get("/openapi.json").json()
    for app, spec in specs.items():
        ids = Counter(
            operation["operationId"]
            for item in spec["paths"].values()
            for method, operation in item.items()
            if method in METHODS
        )
        assert [name for name, count in ids.items() if count > 1] == [], app
        assert all(name.isidentifier() and len(name) <= 40 for name in ids), app
    machine = specs["machine_app"]["paths"]
    assert machine["/workcells/"]["get"]["operationId"] == "list_workcells"
    assert machine["/db/backup.sqlite"]["get"]["operationId"] == "download_backup"


def test_the_generated_package_is_typed_by_the_document(client_package: Path) -> None:
    modules = {path.stem for path in (client_package / "api" / "workcells").glob("*.py")}
    assert modules == {
        "__init__", "list_workcells", "get_workcell", "create_workcell", "replace_workcell",
        "update_workcell", "delete_workcell", "restore_workcell", "purge_workcell",
        "workcell_changes",
    }  # fmt: skip
    backup = (client_package / "api" / "db" / "download_backup.py").read_text()
    assert "File(payload=BytesIO(response.content))" in backup
