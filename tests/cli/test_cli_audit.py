"""``machine-storage audit`` (filters, ``--json``, ``--follow``) and ``migrate plan|apply``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

from storage.accessor import ModelAccessor
from support.cli import TESTS, json_out, run_cli
from support.dataset import seed
from support.models import Recipe


def test_audit_lists_with_filters(app_db: str) -> None:
    seed()
    users = json_out(run_cli("audit", app_db, "--component", "users", "--limit", "3", "--json"))
    assert len(users) == 3 and {entry["component"] for entry in users} == {"users"}
    assert [entry["id"] for entry in users] == sorted((e["id"] for e in users), reverse=True)
    deleted = json_out(run_cli("audit", app_db, "--operation", "soft_delete", "--json"))
    assert [entry["before"]["name"] for entry in deleted] == ["Gone"]
    assert json_out(run_cli("audit", app_db, "--actor", "nobody", "--json")) == []
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert json_out(run_cli("audit", app_db, "--since", tomorrow, "--json")) == []
    assert len(json_out(run_cli("audit", app_db, "--until", tomorrow, "--json"))) > 3
    listing = run_cli("audit", app_db, "--component", "recipes")
    assert listing.returncode == 0 and listing.stdout.count("recipes/") == 2
    assert run_cli("audit", app_db, "--since", "yesterday").returncode == 2


def test_audit_verify_prints_the_head_and_fails_on_a_broken_chain(app_db: str) -> None:
    seed()
    assert run_cli("audit", "list", app_db, "--limit", "1").returncode == 0
    checked = run_cli("audit", "verify", app_db)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: ") and re.search(
        r"^head: [0-9a-f]{64}$", checked.stdout, re.M
    )
    report = json_out(run_cli("audit", "verify", app_db, "--json", "--page-size", "2"))
    assert report["ok"] is True and report["broken_at"] is None
    engine = create_engine(app_db)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE auditlog SET actor = 'mallory' WHERE id = 3"))
    finally:
        engine.dispose()
    broken = run_cli("audit", "verify", app_db)
    assert broken.returncode == 1
    assert broken.stdout.startswith("broken at row 3 (content_changed)")
    report = json.loads(run_cli("audit", "verify", app_db, "--json").stdout)
    assert (report["ok"], report["broken_at"], report["checked"]) == (False, 3, 2)
    assert "verify" in run_cli("audit", "--help").stdout


def test_audit_follow_prints_new_writes_until_interrupted(app_db: str) -> None:
    seed()
    follower = subprocess.Popen(
        [sys.executable, "-m", "storage.cli", "audit", app_db, "--follow", "--json"]
        + ["--component", "recipes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    try:
        assert follower.stdout is not None
        first = [json.loads(follower.stdout.readline()) for _ in range(2)]
        assert [entry["record_id"] for entry in first] == ["pick", "=place"]
        ModelAccessor(Recipe, "recipes").insert(Recipe(name="live"), actor="operator")
        live = json.loads(follower.stdout.readline())
        assert (live["record_id"], live["actor"]) == ("live", "operator")
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 0
    finally:
        follower.kill()
        follower.communicate()


def test_migrate_plan_and_apply(other_db: str) -> None:
    plan = json_out(run_cli("migrate", "plan", other_db, "--models", "support.models", "--json"))
    assert (
        plan["safe"]
        and {"kind": "create_table", "table": "sample", "name": None} in (plan["steps"])
    )
    assert run_cli("migrate", "apply", other_db, "--models", "support.models").returncode == 0
    again = json_out(run_cli("migrate", "plan", other_db, "--models", "support.models", "--json"))
    assert again == {"safe": True, "steps": [], "problems": []}


def test_migrate_refuses_and_reports(other_db: str) -> None:
    engine = create_engine(other_db)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE sample (id VARCHAR(32) PRIMARY KEY)"))
    engine.dispose()
    plan = run_cli("migrate", "plan", other_db, "--models", "support.models", "--json")
    assert plan.returncode == 1
    problems = json.loads(plan.stdout)["problems"]
    assert {"table": "sample", "column": "taken_at"} in [
        {"table": p["table"], "column": p["column"]} for p in problems
    ]
    applied = run_cli("migrate", "apply", other_db, "--models", "support.models")
    assert applied.returncode == 1 and "sample.taken_at" in applied.stderr
    assert run_cli("migrate", "plan", other_db).returncode == 2
    missing = run_cli("migrate", "plan", other_db, "--models", "no_such_module")
    assert missing.returncode == 1 and "cannot import" in missing.stderr
