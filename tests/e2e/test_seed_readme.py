"""Every HTTP example of the vention-storage README, against a real uvicorn server."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from contextlib import closing
from pathlib import Path

from support.servers import served


def test_seed_readme_http_examples(tmp_path: Path) -> None:
    env = {"SEED_APP_DATABASE_URL": f"sqlite:///{tmp_path / 'my_app.db'}"}
    with served(["tests/e2e/seed_app.py"], env=env, ready_path="/db/health") as http:
        # Create user, X-User is the user who will be blamed in the audit log
        response = http.post(
            "/users/",
            json={"name": "Alice", "email": "alice@example.com"},
            headers={"X-User": "admin"},
        )
        assert response.status_code == 201
        user = response.json()
        assert user["name"] == "Alice" and isinstance(user["id"], int)

        # Update user (a partial body keeps the other fields)
        response = http.put(
            f"/users/{user['id']}", json={"name": "Alice Smith"}, headers={"X-User": "admin"}
        )
        assert response.status_code == 200
        assert response.json()["email"] == "alice@example.com"

        # List users
        users = http.get("/users/").json()
        assert [u["name"] for u in users] == ["Alice Smith"]

        # Soft delete user, then restore
        assert http.delete(f"/users/{user['id']}", headers={"X-User": "admin"}).is_success
        assert http.get("/users/").json() == []
        assert http.post(f"/users/{user['id']}/restore", headers={"X-User": "admin"}).is_success
        assert len(http.get("/users/").json()) == 1

        # Audit log querying
        audit_logs = http.get(
            "/db/audit",
            params={
                "component": "users",
                "operation": "create",
                "actor": "admin",
                "since": "2023-01-01T00:00:00Z",
                "limit": 100,
                "offset": 0,
            },
        ).json()
        assert [(row["operation"], row["actor"]) for row in audit_logs] == [("create", "admin")]
        everything = http.get("/db/audit", params={"component": "users"}).json()
        assert [row["operation"] for row in everything] == [
            "restore",
            "soft_delete",
            "update",
            "create",
        ]

        # CSV export
        response = http.get("/db/export.zip")
        assert response.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
        assert any(name.startswith("user") for name in names)

        # Backup
        response = http.get("/db/backup.sqlite")
        assert response.status_code == 200
        backup = tmp_path / "backup.sqlite"
        backup.write_bytes(response.content)
        with closing(sqlite3.connect(backup)) as connection:
            assert connection.execute("SELECT name FROM user").fetchall() == [("Alice Smith",)]

        # Change something, then restore the backup (the seed sends no X-User here)
        http.put(f"/users/{user['id']}", json={"name": "Changed"}, headers={"X-User": "admin"})
        with backup.open("rb") as f:
            files = {"file": ("backup.sqlite", f, "application/x-sqlite3")}
            response = http.post(
                "/db/restore",
                files=files,
                params={"integrity_check": True, "dry_run": False},
            )
        assert response.status_code == 200, response.text
        assert http.get(f"/users/{user['id']}").json()["name"] == "Alice Smith"
        restores = http.get("/db/audit", params={"operation": "restore", "component": "database"})
        assert [row["actor"] for row in restores.json()] == ["anonymous"]

        # Schema diagram
        response = http.get("/db/diagram.svg")
        assert response.status_code == 200 and "<svg" in response.text
