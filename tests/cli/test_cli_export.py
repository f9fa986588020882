"""``machine-storage export`` and ``import``: the CSV zip, modes, dry runs, refusals."""

from __future__ import annotations

import zipfile
from pathlib import Path

from support.cli import dump, json_out, run_cli
from support.dataset import seed

DATA_TABLES = ["user", "gadget", "recipe", "sample"]


def test_export_then_import_into_a_new_database(app_db: str, other_db: str, tmp_path: Path) -> None:
    seed()
    archive = tmp_path / "export.zip"
    exported = json_out(run_cli("export", app_db, str(archive), "--json"))
    assert exported["tables"]["user"] == len(dump(app_db, ["user"])["user"])
    with zipfile.ZipFile(archive) as opened:
        assert {f"{name}.csv" for name in DATA_TABLES} <= set(opened.namelist())
    # The new database gets the tables from the models, as the app would create them.
    created = run_cli("migrate", "apply", other_db, "--models", "support.models")
    assert created.returncode == 0, created.stderr
    summary = json_out(run_cli("import", other_db, str(archive), "--json"))
    assert summary["mode"] == "insert" and summary["tables"]["sample"] == 2
    assert summary["skipped"] == ["auditlog", "auditlog_head"]
    assert dump(other_db, DATA_TABLES) == dump(app_db, DATA_TABLES)


def test_import_modes_dry_run_and_one_table(app_db: str, tmp_path: Path) -> None:
    seed()
    archive = tmp_path / "export.zip"
    assert run_cli("export", app_db, str(archive)).returncode == 0
    before = dump(app_db)
    conflict = run_cli("import", app_db, str(archive))
    assert conflict.returncode == 1 and "error:" in conflict.stderr
    dry = json_out(
        run_cli("import", app_db, str(archive), "--mode", "upsert", "--dry-run", "--json")
    )
    assert dry["dry_run"] is True
    assert dump(app_db) == before
    only = json_out(
        run_cli("import", app_db, str(archive), "--mode", "replace", "--table", "recipe", "--json")
    )
    assert only["tables"] == {"recipe": 2}
    assert dump(app_db, DATA_TABLES) == {name: before[name] for name in DATA_TABLES}


def test_import_refusals_have_exit_codes(app_db: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("name,body\nx,y\n")
    unknown = run_cli("import", app_db, str(csv_file), "--table", "no_such_table")
    assert unknown.returncode == 1 and "unknown table" in unknown.stderr
    assert run_cli("import", app_db, str(csv_file), "--mode", "merge").returncode == 2
    missing = run_cli("import", app_db, str(tmp_path / "absent.zip"))
    assert missing.returncode == 1 and "No such file" in missing.stderr
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    broken = run_cli("import", app_db, str(corrupt))
    assert broken.returncode == 1 and "zip" in broken.stderr
    exists = run_cli("export", app_db, str(csv_file))
    assert exists.returncode == 1 and "exists already" in exists.stderr
