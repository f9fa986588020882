"""The programs extension on the database it is given: ``bootstrap(app, database=b,
programs=...)`` with ``b`` on SQLite, PostgreSQL and MariaDB in turn. Templates, programs, runs,
their lines, events and audit rows are all in ``b``; the default database (the ``sqlite_db``
fixture) stays untouched."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlmodel import SQLModel

from programs import ProgramStore, Runner, RunnerConfig
from programs._tables import (
    ProgramCell,
    ProgramInstance,
    ProgramRun,
    ProgramRunLine,
    ProgramTemplate,
)
from storage import database
from storage.auditor import AuditLog
from storage.bootstrap import bootstrap
from storage.database import Database
from storage.errors import ConfigurationError
from storage.feed import get_feed
from support.backends import fresh_database
from support.runs import runner_registry, start, wait_for, wait_running
from support.testclient import TestClient

pytestmark = pytest.mark.usefixtures("sqlite_db")

ADA = {"X-User": "ada"}
TABLES: tuple[type[SQLModel], ...] = (
    ProgramTemplate,
    ProgramInstance,
    ProgramRun,
    ProgramRunLine,
    ProgramCell,
    AuditLog,
)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def other(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A new database that is not the default one, on each backend in turn."""
    with fresh_database(request.param) as url:
        db = Database(url)
        yield db
        get_feed(db).close()
        db.dispose()


def rows(db: Database) -> dict[str, int]:
    with db.read_session() as session:
        return {
            str(model.__tablename__): session.scalar(select(func.count()).select_from(model)) or 0
            for model in TABLES
        }


def events(text: str) -> list[tuple[str, dict[str, object]]]:
    parsed = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "data" in fields:
            parsed.append((fields["event"], json.loads(fields["data"])))
    return parsed


def metric(client: TestClient, name: str, status: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("status") == status:
                return sample.value
    raise AssertionError(f"no {name}{{status={status!r}}}")


def states(client: TestClient, run_id: object) -> list[object]:
    """The run's states on the stream of every run (which, without follow, ends after every
    write committed before the request, the run's final state included)."""
    every = events(client.get("/api/v2/runs/events?after=0&follow=false").text)
    return [data["status"] for _, data in every if data["id"] == run_id]


def create(client: TestClient, name: str, template: str, data: dict[str, object]) -> None:
    body = {"template_name": template, "data": data}
    response = client.post(f"/api/v2/programs/{name}", json=body, headers=ADA)
    assert response.status_code == 201, response.text


def test_an_app_runs_programs_on_the_database_it_was_given(other: Database) -> None:
    app = FastAPI()
    bootstrap(app, database=other, programs=runner_registry(), runner=RunnerConfig(), metrics=True)
    with TestClient(app) as client:
        names = [row["name"] for row in client.get("/api/v2/program-templates").json()]
        assert "greet" in names and "wait_async" in names
        create(client, "hello", "greet", {"name": "b", "lines": 2})
        create(client, "waiter", "wait_async", {})

        done = wait_for(client, start(client, "hello")["id"])
        assert (done["status"], done["result"]) == ("completed", {"greeted": "b", "lines": 2})
        assert done["output"] == "hello b 0\nhello b 1\n"
        lines = client.get(f"/api/v2/runs/{done['id']}/logs").json()
        assert {line["stream"] for line in lines} == {"output", "log"}
        streamed = events(client.get(f"/api/v2/runs/{done['id']}/events").text)
        assert streamed[-1][1]["status"] == "completed"
        assert {kind for kind, _ in streamed} == {"status", "output", "log"}

        waiting = start(client, "waiter")
        wait_running(client, waiting["id"])
        stopped = client.post(f"/api/v2/runs/{waiting['id']}/stop", headers=ADA)
        assert stopped.status_code in (200, 202), stopped.text
        assert wait_for(client, waiting["id"])["status"] == "cancelled"

        assert states(client, waiting["id"]) == [
            "queued",
            "running",
            "running",  # the stop request
            "cancelled",
        ]
        listed = client.get("/api/v2/programs/hello/runs")
        assert listed.headers["X-Total-Count"] == "1"
        stats = client.get("/api/v2/database/stats").json()
        assert (stats["programs"], stats["tables"]["program_runs"]) == (2, 2)
        assert metric(client, "programs_runs", "completed") == 1
        assert client.get("/db/audit/verify").json()["ok"] is True

    found = rows(other)
    assert found["program_instances"] == 2 and found["program_runs"] == 2
    assert found["program_templates"] == len(list(runner_registry()))
    assert found["program_run_lines"] >= 4 and found["program_cells"] == 1
    assert found["auditlog"] > found["program_templates"] + found["program_instances"]
    assert set(rows(database.get_database()).values()) == {0}


def test_a_store_or_runner_of_another_database_is_refused(other: Database) -> None:
    store = ProgramStore(runner_registry(), database=database.get_database())
    with pytest.raises(ConfigurationError, match="cannot also use"):
        bootstrap(FastAPI(), database=other, programs=store)
    runner = Runner(ProgramStore(runner_registry()), database=database.get_database())
    with pytest.raises(ConfigurationError, match="cannot also use"):
        bootstrap(FastAPI(), database=other, programs=runner_registry(), runner=runner)


def test_a_runner_given_a_database_binds_its_store(other: Database) -> None:
    store = ProgramStore(runner_registry())
    runner = Runner(store, database=other)
    assert store.bound_database is other and runner.database is other
    assert runner.history.runs.bound_database is other and runner.ledger.database is other
