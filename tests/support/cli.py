"""Running the real ``machine-storage`` entry point in a child process, and comparing the
databases it worked on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, select
from sqlmodel import SQLModel

from storage import database, feed
from storage._chain import AuditChainHead
from storage.auditor import AuditLog
from support import models

TESTS = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 120, **options: Any) -> subprocess.CompletedProcess[str]:
    """``python -m storage.cli ARGS`` with the test models importable (``--models
    support.models``); returns the finished process."""
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [sys.executable, "-m", "storage.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **options,
    )


def json_out(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a command printed on stdout, after checking that it succeeded."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def app_tables() -> list[Table]:
    """The tables of the app the commands work on: the test models' (``support.models``, what
    ``--models support.models`` gives the command) and the audit log with its chain's head;
    not the tables other modules of a test run define (the program store's), which the
    command's process lacks."""
    names = {AuditLog.__tablename__, AuditChainHead.__tablename__} | {
        model.__tablename__
        for model in vars(models).values()
        if isinstance(model, type) and issubclass(model, SQLModel) and hasattr(model, "__table__")
    }
    return [table for table in SQLModel.metadata.sorted_tables if table.name in names]


def use_database(url: str) -> None:
    """Make ``url`` this process's database, with every test table (as an app would)."""
    database.set_default_database(database.Database())
    database.set_database_url(url)
    SQLModel.metadata.create_all(database.get_engine(), tables=app_tables())


def release_database() -> None:
    feed.close_all(wait=True)
    database.get_database().dispose()


def dump(url: str, tables: list[str] | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the test tables in the database at ``url``, in key order."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table.name: [
                    tuple(row)
                    for row in connection.execute(
                        select(table).order_by(*table.primary_key.columns)
                    )
                ]
                for table in app_tables()
                if tables is None or table.name in tables
            }
    finally:
        engine.dispose()
