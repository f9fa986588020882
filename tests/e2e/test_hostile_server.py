"""Hostile clients against a real server, on each backend: every attack gets its 4xx, the
server's memory stays within a stated bound (its peak resident size, read from ``/proc``), and
the database is unchanged. And an import whose client goes away stops and keeps nothing."""

from __future__ import annotations

import io
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.servers import ROOT, Server, server_process

TOKEN = "cell-secret"
ADMIN = {"X-User": "ada", "Authorization": f"Bearer {TOKEN}"}
ANONYMOUS = {"X-User": "mallory"}
MIB = 1 << 20
# What the attacks below may add to the server's peak resident size (about 35 MiB measured on
# each backend). Uploads are 64 to 100 MiB; bodies are spooled to disk and CSV lines read at
# most 16 MiB at a time.
RSS_BOUND = 96 * MIB

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc"
)


def cell_app(database_url: str, **env: str) -> AbstractContextManager[Server]:
    variables = {
        "STORAGE_DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT / "tests"),
        "CELL_APP_TOKEN": TOKEN,
        **env,
    }
    return server_process(["tests/e2e/cell_app.py"], env=variables, ready_path="/db/health")


@pytest.fixture
def server(database_url: str) -> Iterator[Server]:
    with cell_app(database_url) as server:
        server.client.timeout = httpx.Timeout(120)
        yield server


def peak_rss(server: Server) -> int:
    """The server's high-water mark of resident memory, in bytes."""
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) * 1024


def fingerprint(server: Server) -> dict[str, bytes]:
    """The parts and the audit log, as the export has them."""
    response = server.client.get("/db/export.zip", headers=ADMIN)
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name) for name in ("part.csv", "auditlog.csv")}


def streamed(*chunks: tuple[bytes, int]) -> Iterator[bytes]:
    """A body of ``chunk * times`` pieces, never held whole by the test."""
    for chunk, times in chunks:
        for _ in range(times):
            yield chunk


def multipart(name: str, parts: Iterator[bytes]) -> tuple[dict[str, str], Iterator[bytes]]:
    boundary = "hostile-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        yield from parts
        yield f"\r\n--{boundary}--\r\n".encode()

    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body()


def zip_bomb() -> bytes:
    """A 300 MiB CSV of one repeated line, deflated to well under 1 MiB."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as files:
        with files.open("part.csv", "w", force_zip64=True) as member:
            member.write(b"name\n")
            for _ in range(300):
                member.write(b"bolt\n" * (MIB // 5))
    return archive.getvalue()


def poisoned_backup(server: Server, tmp_path: Path) -> bytes:
    """The server's own backup with a trigger and a view added."""
    path = tmp_path / "poisoned.sqlite"
    path.write_bytes(server.client.get("/db/backup.sqlite", headers=ADMIN).content)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TRIGGER hide_writes AFTER INSERT ON auditlog BEGIN "
            "DELETE FROM auditlog WHERE id = new.id; END"
        )
        connection.execute("CREATE VIEW everything AS SELECT * FROM part")
    connection.close()
    return path.read_bytes()


def attacks(server: Server, tmp_path: Path) -> Iterator[tuple[str, int, httpx.Response]]:
    """Each attack's name, the status it must get, and the response it got."""
    client = server.client
    csv_upload = "/db/import?table=part"

    headers, body = multipart("part.csv", streamed((b"name\n", 1), (b"x" * MIB, 100)))
    yield "giant-cell", 422, client.post(csv_upload, content=body, headers={**ADMIN, **headers})
    yield "zip-bomb", 422, client.post("/db/import", files={"file": zip_bomb()}, headers=ADMIN)
    forged = b"id,component,record_id,operation,actor\n1,parts,1,delete,nobody\n"
    forged_import = client.post("/db/import?table=auditlog", files={"file": forged}, headers=ADMIN)
    yield "forged-audit", 422, forged_import
    poisoned = {"file": poisoned_backup(server, tmp_path)}
    yield "restore-trigger", 422, client.post("/db/restore", files=poisoned, headers=ADMIN)
    for path in ("/db/import", "/db/restore"):
        headers, body = multipart("big.bin", streamed((b"\0" * MIB, 64)))
        try:
            response = client.post(path, content=body, headers={**ANONYMOUS, **headers})
        except httpx.TransportError:
            continue  # the server answered 401 and closed before the body was sent whole
        yield f"unauthenticated {path}", 401, response
    for path in ("/db/backup.sqlite", "/db/export.zip"):
        yield f"unauthenticated {path}", 401, client.get(path, headers=ANONYMOUS)
    backup = client.post("/api/v2/database/backup", headers=ANONYMOUS)
    yield "unauthenticated program backup", 401, backup
    yield from input_attacks(client)


def input_attacks(client: httpx.Client) -> Iterator[tuple[str, int, httpx.Response]]:
    far = "9999-12-31T23:59:59-23:59"
    json_headers = {**ADMIN, "Content-Type": "application/json"}
    requests: list[tuple[str, str, str, Any]] = [
        ("audit-far-date", "GET", f"/db/audit?since={far}", None),
        ("deep-cursor", "GET", "/parts/?cursor=" + "[" * 5000 + "]" * 5000, None),
        ("int-over-64-bits", "POST", "/parts/", f'{{"name": "x", "count": {2**64}}}'),
        ("lone-surrogate", "POST", "/parts/", '{"name": "\\ud800"}'),
        ("nul-in-like", "GET", "/parts/?name__like=%25%00", None),
    ]
    for name, method, path, body in requests:
        yield name, 422, client.request(method, path, content=body, headers=json_headers)
    long_actor = {**ADMIN, "X-User": "a" * 10_000}
    yield "long-actor", 422, client.post("/parts/", json={"name": "x"}, headers=long_actor)


def test_hostile_requests_get_their_4xx_in_bounded_memory_and_change_nothing(
    server: Server, tmp_path: Path
) -> None:
    assert server.client.post("/parts/", json={"name": "bolt"}, headers=ADMIN).status_code == 201
    before = fingerprint(server)
    baseline = peak_rss(server)
    seen = []
    for name, status, response in attacks(server, tmp_path):
        assert response.status_code == status, (name, response.text[:300])
        assert len(response.content) < 4096, (name, "the error echoes the input")
        seen.append(name)
    assert len(seen) >= 15, seen
    grown = peak_rss(server) - baseline
    assert grown < RSS_BOUND, f"the server's peak memory grew by {grown // MIB} MiB"
    assert fingerprint(server) == before
    assert server.client.get("/db/health").status_code == 200


def test_an_import_stops_when_its_client_goes_away(server: Server) -> None:
    client = server.client
    assert client.post("/parts/", json={"name": "bolt"}, headers=ADMIN).status_code == 201
    before = fingerprint(server)
    rows = b"name\n" + b"".join(b"part-%d\n" % i for i in range(150_000))
    url = "/db/import?table=part"
    started = time.monotonic()
    dry = client.post(url + "&dry_run=true", files={"file": rows}, headers=ADMIN)
    assert dry.status_code == 200, dry.text
    full_import = time.monotonic() - started
    # The client gives up a moment after sending the file and closes its connection.
    with pytest.raises(httpx.ReadTimeout):
        client.post(url, files={"file": rows}, headers=ADMIN, timeout=httpx.Timeout(60, read=0.3))
    # Long enough for the whole import to have committed, had it gone on.
    time.sleep(full_import + 1)
    assert fingerprint(server) == before
    response = client.post("/parts/", json={"name": "nut"}, headers=ADMIN)
    assert response.status_code == 201, response.text


def test_writers_behind_a_long_import_get_a_503_within_the_bound(tmp_path: Path) -> None:
    """SQLite has one writer at a time: while an import holds it, other writes wait at most
    the busy timeout (1 s here), then get a 503 with Retry-After; reads and health answer."""
    rows = b"name\n" + b"".join(b"part-%d\n" % i for i in range(300_000))
    with cell_app(f"sqlite:///{tmp_path}/cell.db", CELL_APP_BUSY_TIMEOUT="1") as server:
        client = server.client
        client.timeout = httpx.Timeout(120)
        url = "/db/import?table=part"
        with ThreadPoolExecutor(1) as pool:
            importing = pool.submit(client.post, url, files={"file": rows}, headers=ADMIN)
            busy = None
            while busy is None and not importing.done():
                started = time.monotonic()
                response = client.post("/parts/", json={"name": "nut"}, headers=ADMIN)
                if response.status_code == 503:
                    busy, waited = response, time.monotonic() - started
            assert busy is not None, "the import ended before a writer was held back"
            assert busy.headers["Retry-After"] == "1"
            assert waited < 3, f"the writer waited {waited:.1f} s for a 1 s bound"
            assert client.get("/db/health").status_code == 200
            assert client.get("/parts/?limit=1").status_code == 200
            assert importing.result().status_code == 200
        assert client.post("/parts/", json={"name": "nut"}, headers=ADMIN).status_code == 201
