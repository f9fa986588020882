"""``machine-storage serve`` through its real entry point: an app factory, two worker
processes, the database URL handed to each, a clean stop on SIGTERM."""

from __future__ import annotations

from support.backends import fresh_database
from support.servers import ROOT, server_process


def test_serve_an_app_factory_with_two_workers() -> None:
    with fresh_database("sqlite") as url:
        command = ["-m", "storage.cli", "serve", "e2e.cell_app:create_app", "--factory"]
        options = ["--workers", "2", "--database-url", url, "--log-level", "warning"]
        env = {"PYTHONPATH": str(ROOT / "tests"), "STORAGE_DATABASE_URL": ""}
        with server_process([*command, *options], env=env, ready_path="/db/health") as server:
            created = server.client.post("/parts/", json={"name": "bolt"}, headers={"X-User": "a"})
            assert created.status_code == 201, created.text
            listed = server.client.get("/parts/").json()
            assert [part["name"] for part in listed] == ["bolt"]
            server.process.terminate()
            assert server.process.wait(timeout=30) == 0
