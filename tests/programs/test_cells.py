"""The cell's record in the database: slots the database enforces, leases, migrated tables and
output lines; on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    update,
)
from sqlmodel import SQLModel

from programs import ProgramStore, RunnerConfig, setup
from programs._history import RunHistory
from programs._lines import LineBuffer
from programs._tables import ProgramRun
from storage import database
from storage.errors import IntegrityConflictError
from support.runs import Serve, start, wait_for, wait_running
from support.testclient import TestClient


def _run(**fields: object) -> ProgramRun:
    values = {"program_name": "greet", "template_name": "greet", "backend": "local"}
    return RunHistory().runs.insert(ProgramRun.model_validate({**values, **fields}), actor="t")


def test_the_database_refuses_a_second_run_in_a_slot(run_store: ProgramStore) -> None:
    first, second = _run(cell="c1", status="running"), _run(cell="c1", status="running")
    other_cell = _run(cell="c2", status="running")
    runs = RunHistory().runs
    runs.update(first.id, slot=0)
    runs.update(other_cell.id, slot=0)  # another cell: its own slot 0
    with pytest.raises(IntegrityConflictError):
        runs.update(second.id, slot=0)
    assert runs.get(second.id).slot is None  # type: ignore[union-attr]


def test_a_runner_that_lost_its_lease_stops_its_program(serve: Serve) -> None:
    with serve(lease_timeout=1.0) as client:
        run = wait_running(client, start(client, "wait_async")["id"])
        with database.transaction() as session:  # what another process does after the lease
            session.execute(
                update(ProgramRun)
                .where(ProgramRun.id == run["id"])  # type: ignore[arg-type]
                .values(status="failed", slot=None, error="taken over")
            )
        deadline = time.monotonic() + 3
        while client.app.state.runner._jobs and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.02)
        assert not client.app.state.runner._jobs  # type: ignore[attr-defined]  # stopped
        after = client.get(f"/api/v2/runs/{run['id']}").json()
        assert (after["status"], after["error"]) == ("failed", "taken over")  # not overwritten
        assert wait_for(client, start(client, "greet")["id"])["status"] == "completed"


def test_runs_of_an_older_schema_are_migrated(backend: str) -> None:
    engine = database.get_engine()
    for name in ("program_run_lines", "program_runs", "program_cells", "program_runners"):
        table = SQLModel.metadata.tables[name]
        table.drop(engine, checkfirst=True)
    old = MetaData()
    Table(
        "program_runs", old,
        Column("id", Integer, primary_key=True),
        Column("program_name", String(200), nullable=False),
        Column("template_name", String(200), nullable=False),
        Column("backend", String(50), nullable=False),
        Column("runner", String(100), nullable=False),
        Column("status", String(20), nullable=False),
        Column("parameters", JSON, nullable=False),
        Column("result", JSON), Column("error", Text), Column("traceback", Text),
        Column("output", Text, nullable=False), Column("logs", Text, nullable=False),
        Column("started_by", String(200), nullable=False), Column("stopped_by", String(200)),
        Column("created_at", DateTime, nullable=False), Column("started_at", DateTime),
        Column("stop_requested_at", DateTime), Column("finished_at", DateTime),
    )  # fmt: skip
    old.create_all(engine)
    store = ProgramStore(__import__("support.runs", fromlist=["x"]).runner_registry())
    app = FastAPI()
    setup(app, store, runner=RunnerConfig())
    inspector = inspect(engine)
    assert {"cell", "owner", "slot", "heartbeat_at"} <= {
        c["name"] for c in inspector.get_columns("program_runs")
    }
    unique = {i["name"] for i in inspector.get_indexes("program_runs") if i["unique"]}
    assert "uq_program_runs_cell_slot" in unique
    store.create_program("greet", "greet", {}, actor="setup")
    with TestClient(app) as client:
        assert wait_for(client, start(client, "greet")["id"])["status"] == "completed"


@pytest.mark.parametrize(
    ("writes", "rows", "limit"),
    [
        pytest.param(["a\nb", "c\n"], ["a\n", "b", "c\n"], 100, id="a-line-being-printed-is-a-row"),
        pytest.param(["one\ntwo\n"], ["one\n", "two\n"], 100, id="one-row-a-line"),
        pytest.param(["x" * 8], ["x" * 5], 5, id="capped"),
    ],
)
def test_a_line_buffer_keeps_the_exact_text(writes: list[str], rows: list[str], limit: int) -> None:
    buffer = LineBuffer(1, limit=limit)
    taken: list[dict[str, object]] = []
    for text in writes:
        buffer.add("output", text)
        taken += buffer.take()
    texts = [str(row["text"]) for row in taken]
    if texts[-1].startswith("x"):
        assert texts[0].startswith("xxxxx\n[the live output stops at 5 characters")
        buffer.add("output", "more")
        assert buffer.take() == []  # nothing after the cap
        return
    assert texts == rows
    assert [row["seq"] for row in taken] == list(range(1, len(rows) + 1))


def test_a_log_record_is_one_row() -> None:
    buffer = LineBuffer(7, limit=100)
    buffer.add("log", "first\nsecond line of it\n")
    assert [(r["run_id"], r["stream"], r["text"]) for r in buffer.take()] == [
        (7, "log", "first\nsecond line of it\n")
    ]
