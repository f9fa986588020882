"""The example robot app: templates discovered from a package, programs stored and served.

Run it from the repository's root with ``python -m examples.robot_app`` and open
http://127.0.0.1:8000/docs. The database URL comes from ``STORAGE_DATABASE_URL`` and defaults
to ``sqlite:///./robot_app.db``; ``POST /api/v2/database/backup`` writes to ``backups/`` next
to the database file.

On first start (no programs stored yet) it stores four example programs. Try::

    curl localhost:8000/api/v2/program-templates/pick_and_place
    curl -X PUT localhost:8000/api/v2/programs/demo_pick -H 'X-User: ada' \\
         -H 'Content-Type: application/json' \\
         -d '{"data": {"pick": {"x": 1, "y": 2, "z": 3}, "place": {"x": 4, "y": 5, "z": 6}}}'
    curl -X POST localhost:8000/api/v2/programs/demo_pick/runs -H 'X-User: ada'
    curl localhost:8000/api/v2/runs/1

Programs run in the app's process (a dry run for ``demo_moves``). With ``NOVA_API`` (and
``NOVA_ACCESS_TOKEN``, ``CELL_NAME``) set and the ``nova`` extra installed, they run on that
NOVA instance, and ``demo_moves`` moves its robot.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

import uvicorn
from fastapi import FastAPI

from programs import ProgramStore
from storage import bootstrap

logger = logging.getLogger("robot_app")

DEFAULT_URL = "sqlite:///./robot_app.db"
PROGRAM_PACKAGE = f"{__package__ or 'examples.robot_app'}.programs"

EXAMPLE_PROGRAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo_pick": (
        "pick_and_place",
        {
            "pick": {"x": 400.0, "y": -200.0, "z": 20.0, "rx": 3.1416},
            "place": {"x": 400.0, "y": 250.0, "z": 35.0, "rx": 3.1416},
            "motion": {"velocity": 500.0},
            "cycles": 10,
        },
    ),
    "euro_pallet_4x3": (
        "palletizing",
        {
            "origin": {"x": 600.0, "y": -400.0, "z": 150.0},
            "rows": 3,
            "columns": 4,
            "layers": 2,
            "pitch_x": 300.0,
            "pitch_y": 260.0,
            "layer_height": 200.0,
        },
    ),
    "gripper_tcp": (
        "tcp_calibration",
        {"tool_name": "vacuum_gripper", "reference": {"x": 500.0, "y": 0.0, "z": 100.0}},
    ),
    "demo_moves": (
        "joint_moves",
        {
            "controller": "ur",
            "waypoints": [[0.0, -1.2, 1.2, 0.0, 1.57, 0.0], [0.5, -1.0, 1.0, 0.0, 1.57, 0.0]],
            "cycles": 2,
        },
    ),
}


def seed_programs(store: ProgramStore) -> None:
    """Store the example programs when no program is stored yet (the first start)."""
    if store.instances.count():
        return
    for name, (template_name, data) in EXAMPLE_PROGRAMS.items():
        store.create_program(name, template_name, data, actor="robot_app.seed")
    logger.info("stored %d example programs", len(EXAMPLE_PROGRAMS))


def create_app(database_url: str | None = None) -> FastAPI:
    """Build the app: one bootstrap call discovers the templates, syncs them into the database
    and mounts the /api/v2 routes next to /db. The program runner is configured from the
    environment: the local backend, or NOVA when ``NOVA_API`` is set."""
    app = FastAPI(title="Robot app", description="machine-storage program store example")
    bootstrap(
        app,
        database_url=database_url or os.environ.get("STORAGE_DATABASE_URL", DEFAULT_URL),
        auto_migrate=True,
        programs=[PROGRAM_PACKAGE],
    )
    seed_programs(app.state.programs)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the example robot app.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    app = create_app()
    print(f"Robot app on http://{args.host}:{args.port}  (API docs: /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
