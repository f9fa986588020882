"""``machine-storage backup`` and ``restore``, and the cron backup that imports no models."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from storage.accessor import ModelAccessor
from support.cli import dump, json_out, run_cli
from support.dataset import seed
from support.models import Recipe

DATA_TABLES = ["user", "gadget", "recipe", "sample"]

CRON_SCRIPT = textwrap.dedent(
    """
    import sys
    from storage.backup import write_snapshot
    from storage.database import set_database_url

    set_database_url(sys.argv[1])
    write_snapshot(sys.argv[2])
    """
)


def test_a_script_that_imports_no_models_backs_up_every_table(
    app_db: str, other_db: str, tmp_path: Path
) -> None:
    seed()
    path = tmp_path / "nightly.sqlite"
    # As a cron job would be written: the library only, none of the app's modules.
    script = subprocess.run(
        [sys.executable, "-c", CRON_SCRIPT, app_db, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert script.returncode == 0, script.stderr
    restored = run_cli("restore", str(path), other_db, "--models", "support.models", "--json")
    assert json_out(restored)["tables"]["sample"] == 2
    expected = dump(app_db, DATA_TABLES)
    assert all(expected[name] for name in DATA_TABLES)
    assert dump(other_db, DATA_TABLES) == expected


def test_backup_then_restore_into_the_apps_tables_found_by_reflection(
    app_db: str, tmp_path: Path
) -> None:
    seed()
    before = dump(app_db, DATA_TABLES)
    made = json_out(run_cli("backup", app_db, str(tmp_path / "b.sqlite"), "--json"))
    assert made["tables"]["user"] == len(before["user"])
    assert set(DATA_TABLES) <= set(made["tables"])
    ModelAccessor(Recipe, "recipes").insert(Recipe(name="after the backup"), actor="t")
    assert dump(app_db, ["recipe"]) != {"recipe": before["recipe"]}
    # No --app/--models: the tables are those the target database has.
    summary = json_out(run_cli("restore", made["file"], app_db, "--json"))
    assert summary["restored"] is True and summary["tables"]["recipe"] == 2
    assert dump(app_db, DATA_TABLES) == before


def test_restore_dry_run_changes_nothing(app_db: str, tmp_path: Path) -> None:
    seed()
    path = tmp_path / "b.sqlite"
    assert run_cli("backup", app_db, str(path)).returncode == 0
    ModelAccessor(Recipe, "recipes").insert(Recipe(name="kept"), actor="t")
    before = dump(app_db)
    summary = json_out(run_cli("restore", str(path), app_db, "--dry-run", "--json"))
    assert summary == {**summary, "restored": False, "dry_run": True}
    assert dump(app_db) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"not a database at all" * 10, "not a SQLite database", id="not-sqlite"),
        pytest.param(None, "truncated", id="truncated"),
    ],
)
def test_restore_refuses_a_bad_file_with_exit_1(
    app_db: str, tmp_path: Path, content: bytes | None, message: str
) -> None:
    seed()
    good = tmp_path / "good.sqlite"
    assert run_cli("backup", app_db, str(good)).returncode == 0
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(content if content is not None else good.read_bytes()[:-1000])
    before = dump(app_db)
    result = run_cli("restore", str(bad), app_db)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert dump(app_db) == before


def test_backup_failures_and_usage_errors_have_their_exit_codes(tmp_path: Path) -> None:
    missing = run_cli("backup", f"sqlite:///{tmp_path / 'nothing.db'}", str(tmp_path / "b"))
    assert missing.returncode == 1 and "no SQLite database" in missing.stderr
    assert not (tmp_path / "nothing.db").exists()
    unreachable = run_cli(
        "backup", "postgresql+psycopg://nobody@127.0.0.1:1/none", str(tmp_path / "b")
    )
    assert unreachable.returncode == 1 and "cannot be reached" in unreachable.stderr
    malformed = run_cli("backup", "not a url", str(tmp_path / "b"))
    assert malformed.returncode == 2 and "not a database URL" in malformed.stderr
    assert run_cli("backup").returncode == 2
    assert run_cli("backup", "--keep", "0", "sqlite://", "x").returncode == 2
    assert not (tmp_path / "b").exists()


def test_backup_never_overwrites_and_keep_rotates(app_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    template = str(folder / "app-%Y%m%d-%H%M%S-%f.sqlite")
    made = []
    for _ in range(4):
        made.append(json_out(run_cli("backup", app_db, template, "--keep", "2", "--json")))
        time.sleep(0.05)
    (folder / "notes.txt").write_text("not a backup")
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted([Path(made[-1]["file"]).name, Path(made[-2]["file"]).name, "notes.txt"])
    assert made[-1]["removed"] == [made[-3]["file"]]
    again = run_cli("backup", app_db, made[-1]["file"])
    assert again.returncode == 1 and "exists already" in again.stderr


def test_every_command_has_help() -> None:
    for command in ["backup", "restore", "export", "import", "audit", "serve", "migrate"]:
        result = run_cli(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout
