"""Wiring into an app: bootstrap(programs=...), extensions, setup(), and the one-way dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import inspect

from programs import ProgramRegistry, ProgramsExtension, ProgramStore, setup
from storage import bootstrap, database
from support.program_templates import (
    PackageMaker,
    install_distribution,
    registry_with_templates,
    template_source,
)
from support.testclient import TestClient

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    database.set_default_database(database.Database())
    yield f"sqlite:///{tmp_path / 'app.db'}"
    database.get_database().dispose()


def test_bootstrap_with_program_packages(url: str, make_package: PackageMaker) -> None:
    package = make_package(
        {"pick.py": template_source("pick"), "broken.py": "import not_installed_driver\n"}
    )
    app = FastAPI()
    bootstrap(app, database_url=url, programs=[package])
    assert isinstance(app.state.programs, ProgramStore)
    client = TestClient(app)
    templates = client.get("/api/v2/program-templates").json()
    assert [t["name"] for t in templates] == ["pick"]
    problems = client.get("/api/v2/database/stats").json()["discovery_problems"]
    assert [p["module"] for p in problems] == [f"{package}.broken"]
    assert client.get("/db/health").status_code == 200
    created = client.post(
        "/api/v2/programs/p1", json={"template_name": "pick", "data": {}}, headers={"X-User": "a"}
    )
    assert created.status_code == 201


def test_bootstrap_without_an_app_only_syncs(url: str, make_package: PackageMaker) -> None:
    package = make_package({"pick.py": template_source("pick")})
    bootstrap(database_url=url, programs=package)
    assert [t.name for t in ProgramStore().list_templates()] == ["pick"]


def test_bootstrap_passes_the_crud_auth_on(url: str) -> None:
    from fastapi import HTTPException
    from fastapi.params import Depends

    from storage.http import RouteAuth

    def deny() -> None:
        raise HTTPException(status_code=403)

    app = FastAPI()
    bootstrap(app, database_url=url, programs=registry_with_templates(),
              auth=RouteAuth(read=[Depends(deny)]))  # fmt: skip
    assert TestClient(app).get("/api/v2/programs").status_code == 403


def test_extensions_run_once_the_database_is_ready(url: str) -> None:
    calls: list[tuple[Any, set[str]]] = []

    def extension(app: FastAPI | None) -> None:
        calls.append((app, set(inspect(database.get_engine()).get_table_names())))

    app = FastAPI()
    bootstrap(app, database_url=url, extensions=[extension])
    bootstrap(database_url=url, extensions=[extension])
    assert [c[0] for c in calls] == [app, None]
    assert {"auditlog", "program_templates"} <= calls[0][1]


def test_setup_after_bootstrap_and_with_a_store(url: str, tmp_path: Path) -> None:
    bootstrap(database_url=url)
    store = ProgramStore(registry_with_templates())
    app = FastAPI()
    assert setup(app, store, prefix="/robot", backup_dir=tmp_path) is store
    assert TestClient(app).get("/robot/program-templates/weld").status_code == 200
    assert setup(None, registry_with_templates(), sync=False).registry.names == ["inspect", "weld"]


def test_entry_points_are_loaded_with_package_names_only(
    url: str, make_package: PackageMaker, tmp_path: Path
) -> None:
    package = make_package({"pick.py": template_source("pick"), "extra.py": template_source("cal")})
    install_distribution(tmp_path / "site", f"{package}_dist", {"extra": f"{package}.extra"})
    bootstrap(database_url=url)
    assert setup(None, f"{package}.pick").registry.names == ["cal", "pick"]
    assert setup(None, [f"{package}.pick"], entry_points=False).registry.names == ["pick"]
    registry = ProgramRegistry()
    registry.discover(f"{package}.pick")
    assert setup(None, registry).registry.names == ["pick"]


def test_an_extension_is_built_before_tables_exist() -> None:
    extension = ProgramsExtension(registry_with_templates(), sync=False, create_tables=False)
    assert extension.store.registry.names == ["inspect", "weld"]


def test_storage_never_imports_programs() -> None:
    code = (
        "import sys, storage, storage.bootstrap, storage.router_model, storage.router_database\n"
        "assert not any(m == 'programs' or m.startswith('programs.') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=SRC)
    for path in sorted((SRC / "storage").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level: the bootstrap seam imports inside a function
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "programs" for n in names), path.name


@pytest.mark.parametrize(
    ("runner", "has_runs"),
    [
        pytest.param(True, True, id="from-environment"),
        pytest.param(False, False, id="no-runner"),
    ],
)
def test_bootstrap_runner_option(
    url: str, make_package: PackageMaker, runner: bool, has_runs: bool
) -> None:
    package = make_package({"pick.py": template_source("pick")})
    app = FastAPI()
    bootstrap(app, database_url=url, programs=[package], runner=runner)
    assert ("/api/v2/runs" in app.openapi()["paths"]) is has_runs


def test_bootstrap_runner_config_is_used(url: str, make_package: PackageMaker) -> None:
    from programs import Runner, RunnerConfig

    package = make_package({"pick.py": template_source("pick")})
    app = FastAPI()
    bootstrap(
        app,
        database_url=url,
        programs=[package],
        runner=RunnerConfig(when_busy="queue", name="cell-1"),
    )
    assert isinstance(app.state.runner, Runner)
    assert app.state.runner.config.when_busy == "queue"
    assert app.state.runner.config.name == "cell-1"


def test_bootstrap_auth_guards_the_db_router(url: str) -> None:
    from fastapi import Depends, HTTPException

    def deny() -> None:
        raise HTTPException(status_code=401, detail="log in")

    from storage.http import RouteAuth

    app = FastAPI()
    bootstrap(app, database_url=url, auth=RouteAuth(admin=[Depends(deny)]))
    client = TestClient(app)
    assert client.get("/db/health").status_code == 200
    assert client.get("/db/backup.sqlite").status_code == 401


def test_a_restore_syncs_the_templates_again_while_the_app_runs(url: str) -> None:
    """A backup from another version of the code holds other template flags: after the
    restore the templates in the code are available again, as after a restart."""
    app = FastAPI()
    bootstrap(app, database_url=url, programs=registry_with_templates())
    store: ProgramStore = app.state.programs
    name = store.list_templates()[0].name
    store.templates.update(name, actor="old version", available=False)
    with TestClient(app) as client:
        backup = client.get("/db/backup.sqlite").content
        restored = client.post("/db/restore", files={"file": ("backup.sqlite", backup)})
        assert restored.status_code == 200, restored.text
        template = client.get(f"/api/v2/program-templates/{name}").json()
        assert template["available"] is True
    store.templates.update(name, actor="old version", available=False)
    TestClient(app).post("/db/restore", files={"file": ("backup.sqlite", backup)})
    assert store.get_template(name).available is False  # the app stopped: no listener left
