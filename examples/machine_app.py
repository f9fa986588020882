"""A small machine app: work cells, the machines in them, their tools and robot programs.

Run it with ``make run`` (or ``python -m examples.machine_app`` from the repository's root) and
open http://127.0.0.1:8000/docs. The database URL comes from ``STORAGE_DATABASE_URL`` and
defaults to ``sqlite:///./machine_app.db``.

It shows: related models with foreign keys, soft delete (cells and machines) next to hard
delete (tools), a validation hook, a hook that fills in a column, an after-commit listener, the
program store of ``examples/robot_app`` (templates, stored programs, runs under ``/api/v2``)
plus a conveyor program that takes its time, and one ``bootstrap()`` call that serves it all
over HTTP with an audit log and the operator console at ``/console`` (``/`` leads there);
``/live`` is a page that shows every committed write as it happens (``examples/live.html``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from datetime import datetime
from pathlib import Path

import uvicorn
from examples.robot_app.app import seed_programs
from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import Field as Parameter
from sqlmodel import Field, Session, SQLModel

from programs import BaseProgramModel, ProgramRegistry, program
from storage import Change, ModelAccessor, bootstrap

logger = logging.getLogger("machine_app")

DEFAULT_URL = "sqlite:///./machine_app.db"
LIVE_PAGE = Path(__file__).with_name("live.html")
PROGRAM_PACKAGE = "examples.robot_app.programs"


class Workcell(SQLModel, table=True):
    """A fenced area with its own safety controller."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    location: str = Field(default="", max_length=200)
    deleted_at: datetime | None = Field(default=None, index=True)


class Machine(SQLModel, table=True):
    """A robot or a conveyor in a work cell."""

    id: int | None = Field(default=None, primary_key=True)
    serial: str = Field(max_length=50, unique=True)
    kind: str = Field(default="robot", max_length=30)
    # Soft-deleting a work cell soft-deletes its machines; restoring it brings them back.
    workcell_id: int | None = Field(
        default=None,
        foreign_key="workcell.id",
        index=True,
        sa_column_kwargs={"info": {"soft_delete": "cascade"}},
    )
    payload_kg: float = 0.0
    commissioned_at: datetime | None = None
    deleted_at: datetime | None = Field(default=None, index=True)


class Tool(SQLModel, table=True):
    """An end-of-arm tool, keyed by its name; deleting it removes it for good."""

    name: str = Field(primary_key=True, max_length=50)
    kind: str = Field(default="gripper", max_length=30)
    max_payload_kg: float = 1.0


workcells = ModelAccessor(Workcell, "workcells")
machines = ModelAccessor(Machine, "machines")
tools = ModelAccessor(Tool, "tools")


@machines.before_insert()
def normalise_serial(session: Session, machine: Machine) -> None:
    """Serials are compared upper-case; a machine without one is refused."""
    machine.serial = machine.serial.strip().upper()
    if not machine.serial:
        raise ValueError("a machine needs a serial number")


@tools.before_insert()
@tools.before_update()
def check_payload(session: Session, tool: Tool) -> None:
    """A tool's rated payload must be positive."""
    if tool.max_payload_kg <= 0:
        raise ValueError("max_payload_kg must be positive")


@machines.after_commit()
def log_machine_changes(changes: list[Change]) -> None:
    """Runs once per committed transaction; a real app would notify a dashboard here."""
    for change in changes:
        logger.info("machine %s: %s", change.values.get("serial"), change.operation)


class ConveyorJog(BaseProgramModel):
    """How far to jog the conveyor, and how fast."""

    steps: int = Parameter(default=20, ge=1, le=10_000, description="Steps to move.")
    step_seconds: float = Parameter(default=0.5, gt=0, le=10, description="Seconds per step.")


@program(name="conveyor_jog", model=ConveyorJog, title="Jog the conveyor", version="1.0")
async def conveyor_jog(params: ConveyorJog) -> int:
    """Move the conveyor step by step, printing each step: a run to watch and to stop."""
    for step in range(1, params.steps + 1):
        print(f"conveyor step {step} of {params.steps}", flush=True)
        await asyncio.sleep(params.step_seconds)
    return params.steps


def program_registry() -> ProgramRegistry:
    """The robot app's templates, the installed ones, and the conveyor's."""
    registry = ProgramRegistry()
    registry.discover(PROGRAM_PACKAGE)
    registry.load_entry_points()
    registry.add(conveyor_jog)
    return registry


def create_app(database_url: str | None = None) -> FastAPI:
    """Build the app: one call wires the database, the CRUD routers and the /db router."""
    app = FastAPI(title="Machine app", description="machine-storage example")
    bootstrap(
        app,
        accessors=[workcells, machines, tools],
        database_url=database_url or os.environ.get("STORAGE_DATABASE_URL", DEFAULT_URL),
        create_tables=True,
        auto_migrate=True,
        max_records_per_model=1000,
        programs=program_registry(),
        console=True,
    )
    seed_programs(app.state.programs)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        """The operator console (docs/console.md)."""
        return RedirectResponse("console/")

    @app.get("/live", include_in_schema=False)
    def live() -> FileResponse:
        """A page that shows every committed write as it happens (docs/live.md)."""
        return FileResponse(LIVE_PAGE)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the example machine app.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    app = create_app()
    print(
        f"Machine app on http://{args.host}:{args.port}  (console: /console, API docs: /docs)",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
