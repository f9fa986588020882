"""What the runner tests share: templates to run (quick, failing, waiting, stubborn, on NOVA)
and helpers to start runs and wait for them over HTTP."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import Field

from programs import BaseProgramModel, ProgramRegistry, ProgramStore, RunContext
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from support.testclient import TestClient

FINAL = ("completed", "failed", "cancelled")

Serve = Callable[..., TestClient]
"""The ``serve`` fixture: ``serve(store=None, **config)`` builds an app whose runner has
``RunnerConfig(**config)`` and returns its client (enter it to run the lifespan)."""

HOME = (0.0,) * 6
AWAY = (0.5, -1.0, 1.0, 0.0, 0.2, 0.0)

logger = logging.getLogger("tests.runs")


class Greeting(BaseProgramModel):
    name: str = "world"
    lines: int = Field(default=1, ge=1)
    delay: float = Field(default=0.0, ge=0)


class Failure(BaseProgramModel):
    message: str = "boom"


class Waiting(BaseProgramModel):
    tick: float = 0.01
    say: str = "waiting"


class Stubborn(BaseProgramModel):
    seconds: float = 0.5


class Moves(BaseProgramModel):
    controller: str = "ur"
    repeat: int = Field(default=1, ge=1)


def runner_registry() -> ProgramRegistry:
    """A new registry with every template the runner tests use."""
    registry = ProgramRegistry()

    @registry.program(name="greet", model=Greeting)
    async def greet(params: Greeting, ctx: RunContext) -> dict[str, Any]:
        """Print and log a line per greeting."""
        for index in range(params.lines):
            print(f"hello {params.name} {index}")
            ctx.logger.info("greeted %s %d", params.name, index)
            await asyncio.sleep(params.delay)
        return {"greeted": params.name, "lines": params.lines}

    @registry.program(name="greet_sync", model=Greeting)
    def greet_sync(params: Greeting, context: RunContext) -> int:
        """The same, as a plain function in a thread."""
        for index in range(params.lines):
            print(f"hello {params.name} {index}")
            logger.warning("greeted %s %d", params.name, index)
            time.sleep(params.delay)
        return params.lines

    @registry.program(name="fail", model=Failure)
    def fail(params: Failure) -> None:
        """Print, then raise."""
        print("about to fail")
        raise ValueError(params.message)

    @registry.program(name="wait_async", model=Waiting)
    async def wait_async(params: Waiting) -> None:
        """Say something, then wait until cancelled."""
        print(params.say, flush=True)
        while True:
            await asyncio.sleep(params.tick)

    @registry.program(name="wait_sync", model=Waiting)
    def wait_sync(params: Waiting, ctx: RunContext) -> None:
        """Say something, then wait until a stop is requested, cooperatively."""
        print(params.say)
        while not ctx.wait(params.tick):
            pass
        print("stopping")
        ctx.raise_if_stopped()

    @registry.program(name="stubborn", model=Stubborn)
    def stubborn(params: Stubborn) -> str:
        """Ignore the stop request for a while."""
        print("not listening")
        time.sleep(params.seconds)
        return "done anyway"

    @registry.program(name="needs_nova", model=Moves)
    async def needs_nova(params: Moves, nova: Any) -> None:
        """Refused on the local backend: ``nova`` has no default."""

    @registry.program(name="maybe_robot", model=Moves)
    async def maybe_robot(params: Moves, ctx: RunContext, cell: Any = None) -> str:
        """Run with or without a robot."""
        return "no robot" if cell is None else f"cell {cell.id} via {ctx.backend}"

    @registry.program(name="move", model=Moves)
    async def move(params: Moves, cell: Any) -> list[float]:
        """Joint PTP motions between HOME and AWAY on NOVA, ``repeat`` times."""
        from nova.actions import jnt

        controller = await cell.controller(params.controller)
        async with controller[0] as motion_group:
            for index in range(params.repeat):
                target = AWAY if index % 2 == 0 else HOME
                await motion_group.plan_and_execute([jnt(target)], tcp="Flange")
            joints = list(await motion_group.joints())
        print("joints after motion", joints)
        return joints

    return registry


def store_with_programs(registry: ProgramRegistry | None = None) -> ProgramStore:
    """A synced store with one program per template, named like it, with default data."""
    store = ProgramStore(registry or runner_registry())
    store.sync()
    for template in store.registry:
        store.create_program(template.name, template.name, {}, actor="setup")
    return store


def start(client: TestClient, program: str, actor: str = "ada") -> dict[str, Any]:
    """Start a run over HTTP and return it (asserting the 202)."""
    response = client.post(f"/api/v2/programs/{program}/runs", headers={"X-User": actor})
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


def wait_for(
    client: TestClient,
    run_id: int,
    statuses: tuple[str, ...] = FINAL,
    *,
    until: Callable[[dict[str, Any]], bool] = lambda run: True,
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Poll ``GET /runs/{id}`` until the run is in one of ``statuses`` and ``until`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = client.get(f"/api/v2/runs/{run_id}").json()
        if run["status"] in statuses and until(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is still {run['status']}: {run}")
        time.sleep(0.01)


def wait_running(client: TestClient, run_id: int, say: str = "waiting") -> dict[str, Any]:
    """Wait until the run is running and its function has printed ``say``."""
    return wait_for(client, run_id, ("running",), until=lambda run: say in run["output"])


def audit_of(run_id: int) -> list[tuple[str, str, str | None]]:
    """(operation, actor, status after) of every audit row of a run, oldest first."""
    rows = ModelAccessor(AuditLog, "auditlog", enable_auditing=False).find(
        AuditLog.component == "program_runs", AuditLog.record_id == str(run_id)
    )
    rows.sort(key=lambda row: row.id or 0)
    return [(row.operation, row.actor, (row.after or {}).get("status")) for row in rows]
