"""An app server of a robot cell for the tests with several processes on one database.

It serves the program routes and the CRUD routes of one model, ``/parts``.

Configured from the environment, as a deployment would be: ``STORAGE_DATABASE_URL``,
``CELL_NAME``, ``PROGRAMS_RUNNER_WHEN_BUSY``, ``PROGRAMS_RUNNER_EXECUTE``,
``PROGRAMS_RUNNER_LEASE_TIMEOUT``; ``CELL_APP_LABEL`` names the process in its instance id (a
label other than the host name makes it look like another machine to the other processes);
``CELL_APP_TOKEN``, when set, is the bearer token every write and admin route requires;
``CELL_APP_BUSY_TIMEOUT`` the seconds a write waits for the database before its 503.
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException
from sqlmodel import Field, SQLModel

from programs import RunnerConfig, setup
from storage import ModelAccessor, bootstrap, database
from storage.http import RouteAuth


class Part(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    count: int = 0


def token_auth(token: str) -> RouteAuth:
    """Writes (and, so, the admin routes) need ``Authorization: Bearer <token>``."""

    def bearer(authorization: str = Header(default="")) -> None:
        if authorization != f"Bearer {token}":
            raise HTTPException(status_code=401, detail="a valid bearer token is required")

    return RouteAuth(write=[Depends(bearer)])


def create_app() -> FastAPI:
    app = FastAPI()
    token = os.environ.get("CELL_APP_TOKEN")
    auth = token_auth(token) if token else None
    if busy_timeout := os.environ.get("CELL_APP_BUSY_TIMEOUT"):
        database.get_database().set_busy_timeout(float(busy_timeout))
    bootstrap(
        app,
        accessors=[ModelAccessor(Part, "parts")],
        database_url=os.environ["STORAGE_DATABASE_URL"],
        max_records_per_model=None,
        auth=auth,
        console=True,
    )
    config = RunnerConfig.from_env(name=os.environ.get("CELL_APP_LABEL") or None)
    setup(app, "support.cell_programs", runner=config, auth=auth)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    uvicorn.run(create_app(), host="127.0.0.1", port=port, log_level="warning")
