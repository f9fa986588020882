"""The /db router over HTTP: every route, its options, and every refusal's status code."""

from __future__ import annotations

import io
import sqlite3
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from sqlalchemy import update

from storage import database, diagram
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.bootstrap import bootstrap
from storage.http import RouteAuth
from storage.router_database import build_db_router
from storage.router_model import build_crud_router
from support.backends import server_url
from support.dataset import a_long_write, seed, table_rows
from support.models import User
from support.testclient import TestClient

ACTOR = {"X-User": "operator"}


def client_for(**options: Any) -> TestClient:
    app = FastAPI()
    app.include_router(build_db_router(**options))
    return TestClient(app)


@pytest.fixture
def client(backend: str) -> TestClient:
    return client_for()


def upload(data: bytes, name: str = "backup.sqlite") -> dict[str, Any]:
    return {"file": (name, data, "application/octet-stream")}


# -- health -------------------------------------------------------------------------------------


def test_health_queries_the_database(backend: str, client: TestClient) -> None:
    response = client.get("/db/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "backend": backend}


@pytest.fixture
def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    database.set_default_database(database.Database())
    database.set_database_url(request.param.format(tmp=tmp_path))
    yield
    database.get_database().dispose()


@pytest.mark.parametrize(
    "unreachable",
    [
        pytest.param("sqlite:///{tmp}/no/such/directory/app.db", id="sqlite-missing-directory"),
        pytest.param("postgresql+psycopg://postgres@127.0.0.1:1/app", id="postgresql-port-closed"),
        pytest.param("mysql+pymysql://root@127.0.0.1:1/app", id="mariadb-port-closed"),
    ],
    indirect=True,
)
@pytest.mark.usefixtures("unreachable")
@pytest.mark.parametrize("path", ["/db/health", "/db/export.zip", "/db/audit"])
def test_routes_are_503_when_the_database_is_unreachable(path: str) -> None:
    """Export included: it is sent while it is written, but the read starts before the
    response does, so the client gets the status, not a broken zip."""
    response = client_for().get(path, headers=ACTOR)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("the database cannot be reached")
    assert response.headers["Retry-After"] == "1"


# -- audit --------------------------------------------------------------------------------------


def write_audit_history() -> None:
    users = ModelAccessor(User, "users")
    ada = users.insert(User(name="Ada"), actor="alice")
    users.update(ada.id, name="Ada L.", actor="bob")
    bob = users.insert(User(name="Bob"), actor="bob")
    users.delete(bob.id, actor="alice")
    # Known timestamps: one row per day, the last two on the same instant (ties break by id).
    base = datetime(2026, 3, 1, 12, tzinfo=UTC)
    stamps = [base, base + timedelta(days=1), base + timedelta(days=2), base + timedelta(days=2)]
    with database.transaction() as session:
        for audit_id, stamp in enumerate(stamps, start=1):
            session.execute(
                update(AuditLog.__table__)  # type: ignore[arg-type]
                .where(AuditLog.__table__.c.id == audit_id)  # type: ignore[attr-defined]
                .values(timestamp=stamp)
            )


@pytest.mark.parametrize(
    ("params", "expected_ids"),
    [
        pytest.param({}, [4, 3, 2, 1], id="newest-first-ties-by-id"),
        pytest.param({"component": "users", "actor": "alice"}, [4, 1], id="actor"),
        pytest.param({"operation": "soft_delete"}, [4], id="operation"),
        pytest.param({"record_id": "1"}, [2, 1], id="record-id"),
        pytest.param({"component": "nope"}, [], id="unknown-component"),
        pytest.param({"since": "2026-03-02T12:00:00Z"}, [4, 3, 2], id="since-aware"),
        pytest.param({"since": "2026-03-02T12:00:00"}, [4, 3, 2], id="since-naive-is-utc"),
        pytest.param({"until": "2026-03-02T14:00:00+02:00"}, [1], id="until-exclusive-offset"),
        pytest.param({"limit": 2}, [4, 3], id="limit"),
        pytest.param({"limit": 2, "offset": 3}, [1], id="offset"),
    ],
)
def test_audit_filters(client: TestClient, params: dict[str, Any], expected_ids: list[int]) -> None:
    write_audit_history()
    response = client.get("/db/audit", params=params)
    assert response.status_code == 200
    assert [row["id"] for row in response.json()] == expected_ids
    if "limit" not in params:
        assert response.headers["X-Total-Count"] == str(len(expected_ids))


def test_audit_rows_are_typed(client: TestClient) -> None:
    write_audit_history()
    row = client.get("/db/audit", params={"operation": "update"}).json()[0]
    assert row["record_id"] == "1" and row["actor"] == "bob"
    assert row["before"]["name"] == "Ada" and row["after"]["name"] == "Ada L."
    assert datetime.fromisoformat(row["timestamp"]).utcoffset() == timedelta(0)


def test_audit_verify_reports_the_chain(client: TestClient) -> None:
    ModelAccessor(User, "users").insert_many([User(name=f"u{n}") for n in range(3)])
    users = ModelAccessor(User, "users")
    users.update(1, name="changed", actor="bob")
    report = client.get("/db/audit/verify").json()
    assert report["ok"] is True and report["checked"] == 4 and report["starts_at"] == 1
    assert report["last_id"] == 4 and len(report["head"]) == 64
    with database.transaction() as session:
        session.execute(
            update(AuditLog.__table__)  # type: ignore[arg-type]
            .where(AuditLog.__table__.c.id == 2)  # type: ignore[attr-defined]
            .values(actor="mallory")
        )
    report = client.get("/db/audit/verify").json()
    assert (report["ok"], report["broken_at"], report["problem"]) == (False, 2, "content_changed")
    assert report["checked"] == 1


@pytest.mark.parametrize(
    ("params", "status"),
    [
        pytest.param({"limit": 0}, 422, id="limit-zero"),
        pytest.param({"limit": 51}, 422, id="limit-over-max"),
        pytest.param({"limit": 50}, 200, id="limit-at-max"),
        pytest.param({"offset": -1}, 422, id="negative-offset"),
        pytest.param({"since": "last tuesday"}, 422, id="bad-datetime"),
    ],
)
def test_audit_limits(backend: str, params: dict[str, Any], status: int) -> None:
    client = client_for(audit_default_limit=3, audit_max_limit=50)
    assert client.get("/db/audit", params=params).status_code == status


def test_audit_default_limit(backend: str) -> None:
    write_audit_history()
    assert len(client_for(audit_default_limit=3).get("/db/audit").json()) == 3


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"audit_default_limit": 0}, id="default-zero"),
        pytest.param({"audit_default_limit": 20, "audit_max_limit": 10}, id="default-over-max"),
        pytest.param({"max_restore_bytes": 0}, id="restore-limit-zero"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_db_router(**options)


# -- diagram ------------------------------------------------------------------------------------


def test_diagram_is_an_svg_of_every_table(client: TestClient) -> None:
    response = client.get("/db/diagram.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.text.lstrip().startswith("<?xml") and "</svg>" in response.text
    for table in ("auditlog", "user", "gadget", "sample"):
        assert f">{table}<" in response.text


def test_diagram_is_503_without_any_dot(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH on which there is no dot
    monkeypatch.setattr(diagram, "_BUNDLED_DOT", "graphviz-pure-not-installed")
    response = client.get("/db/diagram.svg")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "graphviz-pure" in detail and "pip install machine-storage[diagram]" in detail
    assert "Retry-After" not in response.headers


def test_diagram_is_503_without_schemadisplay(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy_schemadisplay", None)  # as if not installed
    response = client.get("/db/diagram.svg")
    assert response.status_code == 503
    assert "pip install machine-storage[diagram]" in response.json()["detail"]


# -- export and import --------------------------------------------------------------------------


def test_export_zip(client: TestClient) -> None:
    seed()
    response = client.get("/db/export.zip")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith('attachment; filename="export-')
    assert "content-length" not in response.headers  # sent while it is written
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert {"user.csv", "auditlog.csv", "gadget.csv"} <= set(archive.namelist())
        assert archive.testzip() is None


def test_export_import_round_trip_over_http(client: TestClient) -> None:
    seed()
    exported = client.get("/db/export.zip").content
    before = table_rows()
    response = client.post(
        "/db/import", files=upload(exported, "export.zip"), params={"mode": "upsert"}, headers=ACTOR
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "upsert" and body["dry_run"] is False
    assert body["tables"]["user"] == len(before["user"])
    after = table_rows()
    after.pop("auditlog"), before.pop("auditlog")
    after.pop("auditlog_head"), before.pop("auditlog_head")
    assert after == before


def csv_file(text: str) -> dict[str, Any]:
    return upload(text.encode("utf-8"), "user.csv")


@pytest.mark.parametrize(
    ("request_kwargs", "status", "detail"),
    [
        pytest.param(
            {"files": csv_file("name,age\nAda,36\nBob,old\n"), "params": {"table": "user"}},
            422,
            "table user, row 2, column age: 'old' is not an integer",
            id="bad-value",
        ),
        pytest.param(
            {"files": csv_file("name\nAda\n"), "params": {"table": "robots"}},
            422,
            "unknown table 'robots'",
            id="unknown-table",
        ),
        pytest.param(
            {"files": csv_file("name\nAda\n")},
            422,
            "a single CSV file needs the table query parameter",
            id="no-table",
        ),
        pytest.param(
            {"files": csv_file("id,name\n1,Again\n"), "params": {"table": "user"}},
            409,
            "table user, row 1: a row with id=1 already exists",
            id="existing-key",
        ),
        pytest.param(
            {"files": upload(b"PK\x03\x04 not really a zip", "x.zip")},
            422,
            "not a valid zip archive",
            id="broken-zip",
        ),
        pytest.param(
            {"files": csv_file("name\nAda\n"), "params": {"table": "user"}, "headers": {}},
            400,
            "the X-User header is required",
            id="no-actor",
        ),
    ],
)
def test_bad_imports_are_refused_and_nothing_changes(
    client: TestClient, request_kwargs: dict[str, Any], status: int, detail: str
) -> None:
    seed()
    before = table_rows()
    request_kwargs.setdefault("headers", ACTOR)
    response = client.post("/db/import", **request_kwargs)
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert table_rows() == before


def test_import_dry_run(client: TestClient) -> None:
    response = client.post(
        "/db/import",
        files=csv_file("name\nAda\n"),
        params={"table": "user", "dry_run": True},
        headers=ACTOR,
    )
    assert response.json() == {
        "mode": "insert",
        "dry_run": True,
        "tables": {"user": 1},
        "skipped": [],
    }
    assert table_rows()["user"] == []


def test_import_upload_limit(backend: str) -> None:
    client = client_for(max_import_bytes=1024)
    response = client.post(
        "/db/import",
        files=csv_file("name\n" + "Ada\n" * 100_000),
        params={"table": "user"},
        headers=ACTOR,
    )
    assert response.status_code == 413
    assert table_rows()["user"] == []


# -- backup and restore -------------------------------------------------------------------------


def test_backup_is_a_sound_sqlite_file(client: TestClient, tmp_path: Path) -> None:
    seed()
    response = client.get("/db/backup.sqlite")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-sqlite3"
    assert response.headers["content-disposition"].startswith('attachment; filename="backup-')
    path = tmp_path / "downloaded.sqlite"
    path.write_bytes(response.content)
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        count = connection.execute('SELECT COUNT(*) FROM "user"').fetchone()[0]
    finally:
        connection.close()
    assert count == len(table_rows()["user"])


def test_backup_then_restore_over_http(client: TestClient) -> None:
    seed()
    before = table_rows()
    backup = client.get("/db/backup.sqlite").content
    ModelAccessor(User, "users").insert(User(name="after the backup"))
    response = client.post("/db/restore", files=upload(backup), headers=ACTOR)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["restored"] is True and body["dry_run"] is False
    assert body["bytes"] == len(backup)
    assert body["tables"]["user"] == len(before["user"])
    after = table_rows()
    audit = after.pop("auditlog")
    assert audit[-1][2:6] == ("database", "database", "restore", "operator")
    before.pop("auditlog")
    after.pop("auditlog_head"), before.pop("auditlog_head")
    assert after == before


def test_restore_dry_run_and_no_integrity_check(client: TestClient) -> None:
    seed()
    backup = client.get("/db/backup.sqlite").content
    ModelAccessor(User, "users").insert(User(name="after the backup"))
    before = table_rows()
    response = client.post(
        "/db/restore",
        files=upload(backup),
        params={"dry_run": True, "integrity_check": False},
        headers=ACTOR,
    )
    assert response.status_code == 200
    assert response.json()["restored"] is False and response.json()["dry_run"] is True
    assert table_rows() == before


def foreign_sqlite() -> bytes:
    with closing(sqlite3.connect(":memory:")) as connection:
        connection.execute("CREATE TABLE inventory (id INTEGER PRIMARY KEY)")
        return connection.serialize()


BAD_RESTORES: list[object] = [
    pytest.param(
        lambda good: b"not a database" * 100, {}, 422, "no SQLite header", id="non-sqlite"
    ),
    pytest.param(lambda good: good[:-4096], {}, 422, "truncated", id="truncated"),
    pytest.param(lambda good: foreign_sqlite(), {}, 422, "does not define", id="foreign-schema"),
]


@pytest.mark.parametrize(("make", "extra", "status", "detail"), BAD_RESTORES)
def test_bad_restores_are_refused_and_nothing_changes(
    client: TestClient,
    make: Callable[[bytes], bytes],
    extra: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    seed()
    bad = make(client.get("/db/backup.sqlite").content)
    ModelAccessor(User, "users").insert(User(name="after the backup"))
    before = table_rows()
    response = client.post("/db/restore", files=upload(bad), **{"headers": ACTOR, **extra})
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert table_rows() == before


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "storage-test-boundary"
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="backup.sqlite"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("content-length", id="declared-length"),
        pytest.param("chunked", id="chunked-body"),
        pytest.param("just-over", id="file-just-over-the-limit"),
    ],
)
def test_oversize_restore_is_413_and_nothing_changes(backend: str, how: str) -> None:
    seed()
    backup = client_for().get("/db/backup.sqlite").content
    before = table_rows()
    if how == "just-over":  # within the multipart slack: caught while the file is copied
        data, limit = backup, len(backup) - 1
    else:  # far over: refused by the route before (or while) the body is read
        data, limit = backup + bytes(1 << 20), 4096
    client = client_for(max_restore_bytes=limit)
    body, content_type = multipart(data)
    headers = {**ACTOR, "Content-Type": content_type}
    if how == "chunked":
        chunks = [body[i : i + 1024] for i in range(0, len(body), 1024)]
        response = client.post("/db/restore", content=iter(chunks), headers=headers)
        assert "content-length" not in {k.lower() for k in response.request.headers}
    else:
        response = client.post("/db/restore", content=body, headers=headers)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert table_rows() == before


# -- auth and bootstrap -------------------------------------------------------------------------


def require_token(x_token: str | None = Header(default=None)) -> None:
    if x_token is None:
        raise HTTPException(status_code=401, detail="token required")


def require_admin(x_role: str | None = Header(default=None)) -> None:
    if x_role != "admin":
        raise HTTPException(status_code=403, detail="admins only")


@pytest.mark.parametrize(
    ("method", "path", "guard"),
    [
        pytest.param("GET", "/db/health", 401, id="health-read"),
        pytest.param("GET", "/db/audit", 401, id="audit-read"),
        pytest.param("GET", "/db/audit/verify", 401, id="audit-verify-read"),
        pytest.param("GET", "/db/diagram.svg", 401, id="diagram-read"),
        pytest.param("GET", "/db/export.zip", 403, id="export-admin"),
        pytest.param("GET", "/db/backup.sqlite", 403, id="backup-admin"),
        pytest.param("POST", "/db/import", 403, id="import-admin"),
        pytest.param("POST", "/db/restore", 403, id="restore-admin"),
    ],
)
def test_auth_guards_each_kind_of_route(backend: str, method: str, path: str, guard: int) -> None:
    auth = RouteAuth(read=[Depends(require_token)], admin=[Depends(require_admin)])
    client = client_for(auth=auth)
    files = csv_file("name\nAda\n") if method == "POST" else None
    assert client.request(method, path, files=files, headers=ACTOR).status_code == guard


ADMIN_ROUTES = [
    pytest.param("GET", "/db/export.zip", id="export"),
    pytest.param("GET", "/db/backup.sqlite", id="backup"),
    pytest.param("POST", "/db/import", id="import"),
    pytest.param("POST", "/db/restore", id="restore"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize(
    ("auth", "status"),
    [
        pytest.param(RouteAuth(write=[Depends(require_admin)]), 403, id="write-guard"),
        pytest.param(RouteAuth(read=[Depends(require_token)]), 401, id="read-guard"),
    ],
)
def test_a_guard_on_writes_or_reads_also_guards_the_admin_routes(
    backend: str, method: str, path: str, auth: RouteAuth, status: int
) -> None:
    client = client_for(auth=auth)
    files = csv_file("name\nAda\n") if method == "POST" else None
    refused = client.request(method, path, files=files, headers=ACTOR)
    assert refused.status_code == status
    allowed = {"X-Role": "admin", "X-Token": "t", **ACTOR}
    assert client.request(method, path, files=files, headers=allowed).status_code not in (401, 403)


def test_an_explicitly_open_admin_beside_guards_is_warned(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth = RouteAuth(write=[Depends(require_admin)], admin=())
    assert "leaves export, import, backup and restore unguarded" in caplog.text
    assert client_for(auth=auth).get("/db/backup.sqlite").status_code == 200


@pytest.mark.parametrize("path", ["/db/import", "/db/restore"])
def test_without_any_auth_data_is_replaced_only_from_this_machine(backend: str, path: str) -> None:
    app = FastAPI()
    app.include_router(build_db_router())
    remote = TestClient(app, client=("203.0.113.7", 50000))
    response = remote.post(path, files=csv_file("name\nAda\n"), headers=ACTOR)
    assert response.status_code == 403
    assert "RouteAuth(admin=[Depends(" in response.json()["detail"]
    assert remote.get("/db/export.zip").status_code == 200  # reading stays open, as before
    local = TestClient(app, client=("127.0.0.1", 50000))
    assert local.post(path, files=csv_file("name\nAda\n"), headers=ACTOR).status_code != 403
    opened = FastAPI()
    opened.include_router(build_db_router(auth=RouteAuth(unguarded_remote_admin=True)))
    anyone = TestClient(opened, client=("203.0.113.7", 50000))
    assert anyone.post(path, files=csv_file("name\nAda\n"), headers=ACTOR).status_code != 403


@pytest.mark.parametrize("path", ["/db/import", "/db/restore"])
def test_the_guard_runs_before_the_upload_is_read(backend: str, path: str) -> None:
    client = client_for(auth=RouteAuth(admin=[Depends(require_admin)]))
    sent = []

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
        for _ in range(64):
            sent.append(1 << 20)
            yield b"x" * (1 << 20)
        yield b"\r\n--b--\r\n"

    headers = {"Content-Type": "multipart/form-data; boundary=b", **ACTOR}
    response = client.post(path, content=body(), headers=headers)
    assert response.status_code == 403
    assert sum(sent) <= 1 << 20, f"{sum(sent)} bytes were read before the guard refused"


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"content": b"name\nAda\n"}, id="not-multipart"),
        pytest.param({"files": {"other": ("x.csv", b"name\nAda\n")}}, id="no-file-field"),
        pytest.param({"data": {"file": "just text"}}, id="text-not-file"),
    ],
)
@pytest.mark.parametrize("path", ["/db/import", "/db/restore"])
def test_an_upload_without_the_file_is_422(
    client: TestClient, path: str, request_kwargs: dict[str, Any]
) -> None:
    response = client.post(path, headers=ACTOR, **request_kwargs)
    assert response.status_code == 422
    assert "multipart/form-data" in response.json()["detail"]


def test_bootstrap_mounts_the_router(backend: str) -> None:
    app = FastAPI()
    bootstrap(app)
    client = TestClient(app)
    assert client.get("/db/health").json()["status"] == "ok"
    assert client.get("/db/audit").status_code == 200


def test_audit_offset_beyond_any_backend_is_422(client: TestClient) -> None:
    response = client.get("/db/audit", params={"offset": 2**63})
    assert response.status_code == 422


def test_writers_behind_a_long_write_get_a_503_in_time_and_reads_go_on(
    sqlite_db: Path,
) -> None:
    database.get_database().dispose()  # the fixture's: this test needs a shorter busy timeout
    database.set_default_database(database.Database())
    database.set_database_url(f"sqlite:///{sqlite_db}")
    database.get_database().set_busy_timeout(0.5)
    app = FastAPI()
    app.include_router(build_db_router())
    app.include_router(build_crud_router(ModelAccessor(User, "users")))
    client = TestClient(app)
    with a_long_write():  # as a long import or restore holds the database
        started = time.monotonic()
        blocked = client.post("/users/", json={"name": "Ada"}, headers=ACTOR)
        waited = time.monotonic() - started
        assert blocked.status_code == 503 and blocked.headers["Retry-After"] == "1"
        assert waited < 5
        assert client.get("/db/health").status_code == 200
        assert client.get("/users/").status_code == 200
    assert client.post("/users/", json={"name": "Ada"}, headers=ACTOR).status_code == 201
    database.get_database().dispose()


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_on_a_server_a_writer_waits_for_a_row_lock_at_most_the_busy_timeout(server: str) -> None:
    database.set_default_database(database.Database())
    database.set_database_url(server_url(server))
    database.get_database().set_busy_timeout(1.0)
    users = ModelAccessor(User, "users")
    ada = users.insert(User(name="Ada"), actor="t")
    app = FastAPI()
    app.include_router(build_crud_router(users))
    client = TestClient(app)
    holding, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:
        with database.transaction():
            users.update(ada.id, actor="t", age=1)  # the row stays locked until the end
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        blocked = client.patch(f"/users/{ada.id}", json={"age": 2}, headers=ACTOR)
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert blocked.status_code == 503 and blocked.headers["Retry-After"] == "1"
    assert waited < 5
    assert client.patch(f"/users/{ada.id}", json={"age": 2}, headers=ACTOR).status_code == 200
    database.get_database().dispose()


def test_access_probes_answer_as_the_guards_of_each_level(sqlite_db: Path) -> None:
    """GET /db/access/{level}: 204 where the credentials pass that level's guards, else the
    guard's own status; without any auth, replacing data is for this machine only."""
    auth = RouteAuth(read=[Depends(require_token)], admin=[Depends(require_admin)])
    client = client_for(auth=auth)
    levels = ("read", "write", "admin", "replace")
    anonymous = [client.get(f"/db/access/{level}").status_code for level in levels]
    assert anonymous == [401, 204, 403, 403]
    token = [client.get(f"/db/access/{level}", headers={"X-Token": "t"}).status_code
             for level in levels]  # fmt: skip
    assert token == [204, 204, 403, 403]
    admin = {"X-Token": "t", "X-Role": "admin"}
    assert [client.get(f"/db/access/{level}", headers=admin).status_code for level in levels] == [
        204
    ] * 4
    app = FastAPI()
    app.include_router(build_db_router())
    remote = TestClient(app, client=("203.0.113.7", 50000))
    assert [remote.get(f"/db/access/{level}").status_code for level in levels] == [204] * 3 + [403]
    local = TestClient(app, client=("127.0.0.1", 50000))
    assert local.get("/db/access/replace").status_code == 204
