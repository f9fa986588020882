"""``machine-storage migrate init|baseline|revision|upgrade|check|current|downgrade``: a
database made by auto-migration moves to Alembic, then a model change goes through a revision,
through the real entry point on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, inspect

from support.cli import run_cli

MODELS = """
from sqlmodel import Field, SQLModel


class Bin(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40)
{extra}
"""


def write_models(folder: Path, extra: str = "") -> None:
    (folder / "binmodels.py").write_text(MODELS.format(extra=extra), encoding="utf-8")


def columns(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns("bin")}
    finally:
        engine.dispose()


def test_from_auto_migration_to_alembic_revisions(other_db: str, tmp_path: Path) -> None:
    def cli(*args: str) -> tuple[int, str, str]:
        result = run_cli(*args, cwd=tmp_path)  # the models module is found in the cwd
        return result.returncode, result.stdout, result.stderr

    where = ("--dir", "migrations", "--db", other_db)
    write_models(tmp_path)
    assert cli("migrate", "apply", other_db, "--models", "binmodels")[0] == 0
    assert cli("migrate", "init", "--dir", "migrations", "--models", "binmodels")[0] == 0
    assert (tmp_path / "migrations" / "env.py").is_file()
    code, _, error = cli("migrate", "baseline", *where)
    assert code == 0, error
    code, out, _ = cli("migrate", "current", *where, "--json")
    positions = json.loads(out)
    assert code == 0 and positions["current"] == positions["heads"] != []

    write_models(tmp_path, "    note: str | None = Field(default=None, max_length=80)\n")
    code, out, _ = cli("migrate", "check", *where)
    assert code == 1 and "note" in out
    code, out, error = cli("migrate", "revision", "-m", "bin note", *where)
    assert code == 0, error
    assert "add_column" in Path(out.strip()).read_text(encoding="utf-8")
    code, _, error = cli("migrate", "upgrade", *where)
    assert code == 0, error
    assert "note" in columns(other_db)
    assert cli("migrate", "check", *where)[0] == 0

    code, out, error = cli("migrate", "downgrade", "no-such-revision", *where)
    assert code == 1 and error.startswith("machine-storage: error:")
    assert "Traceback" not in error
