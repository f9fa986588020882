"""Live events over real uvicorn servers on one database: the change feed and the run streams
reach every server's clients, resume without loss or repeats, survive a ``kill -9`` of a server,
never wait for a client that stopped reading, and end when the server stops."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from support.servers import ROOT, Server, server_process
from support.sse import Event, Stream

ADA = {"X-User": "ada"}


class Cluster:
    """App servers on one database, and the streams opened on them (closed at the end)."""

    def __init__(self, database_url: str, stack: ExitStack) -> None:
        self.database_url = database_url
        self._stack = stack

    def server(self, **env: str) -> Server:
        variables = {
            "STORAGE_DATABASE_URL": self.database_url,
            "PROGRAMS_RUNNER_LEASE_TIMEOUT": "3",
            "PYTHONPATH": str(ROOT / "tests"),
            **env,
        }
        return self._stack.enter_context(
            server_process(["tests/e2e/cell_app.py"], env=variables, ready_path="/db/health")
        )

    def stream(self, server: Server, path: str, **options: object) -> Stream:
        stream = Stream(str(server.client.base_url), path, **options)  # type: ignore[arg-type]
        self._stack.callback(stream.close)
        return stream


@pytest.fixture
def cluster(database_url: str) -> Iterator[Cluster]:
    with ExitStack() as stack:
        yield Cluster(database_url, stack)


def add_part(server: Server, name: str) -> int:
    response = server.client.post("/parts/", json={"name": name}, headers=ADA)
    assert response.status_code == 201, response.text
    part_id: int = response.json()["id"]
    return part_id


def ids(events: list[Event]) -> list[int]:
    return [int(event.id or 0) for event in events]


def test_a_write_on_one_server_reaches_the_streams_of_every_server(cluster: Cluster) -> None:
    a, b = cluster.server(), cluster.server()
    on_a = cluster.stream(a, "/parts/changes").wait_ready()
    on_b = cluster.stream(b, "/db/changes?component=parts").wait_ready()
    part = add_part(a, "bolt")
    b.client.patch(f"/parts/{part}", json={"count": 3}, headers={"X-User": "bo"})
    # A write through ModelAccessor in a process that serves nothing.
    script = (
        "import sys; sys.path.insert(0, 'tests/e2e'); from cell_app import Part;"
        "from storage import ModelAccessor, bootstrap;"
        f"bootstrap(database_url={cluster.database_url!r});"
        "ModelAccessor(Part, 'parts').insert(Part(name='nut'), actor='script')"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)
    for stream in (on_a, on_b):
        events = stream.take(3)
        assert [e.event for e in events] == ["create", "update", "create"]
        assert [e.json()["actor"] for e in events] == ["ada", "bo", "script"]
        assert events[1].json()["before"]["count"] == 0 and events[1].json()["after"]["count"] == 3
        assert ids(events) == sorted(ids(events))


def test_reconnecting_after_a_thousand_writes_from_four_writers_loses_and_repeats_nothing(
    cluster: Cluster,
) -> None:
    a, b = cluster.server(), cluster.server()
    first = cluster.stream(a, "/parts/changes").wait_ready()
    add_part(a, "first")
    seen = first.take(1)
    first.close()

    def write(worker: int) -> None:
        server = (a, b)[worker % 2]
        for i in range(250):
            add_part(server, f"w{worker}-{i}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    resumed = cluster.stream(b, "/parts/changes", headers={"Last-Event-ID": seen[-1].id or ""})
    events = resumed.wait_ready().take(1000, timeout=60)
    assert len(set(ids(events))) == 1000
    assert ids(events) == sorted(ids(events))
    audit = b.client.get("/db/audit", params={"component": "parts", "limit": 1000}).json()
    committed = sorted(entry["id"] for entry in audit if entry["id"] > int(seen[-1].id or 0))
    assert ids(events) == committed  # every committed write, in order


def test_a_stream_resumes_on_another_server_after_a_kill(cluster: Cluster) -> None:
    a, b = cluster.server(), cluster.server()
    stream = cluster.stream(a, "/db/changes").wait_ready()
    for i in range(10):
        add_part(b, f"before-{i}")
    before = stream.take(10)
    a.kill()
    for i in range(10):
        add_part(b, f"after-{i}")
    resumed = cluster.stream(b, "/db/changes", headers={"Last-Event-ID": before[-1].id or ""})
    after = resumed.wait_ready().take(10)
    assert [e.json()["after"]["name"] for e in after] == [f"after-{i}" for i in range(10)]
    assert ids(after)[0] > ids(before)[-1]


def test_a_client_that_stops_reading_holds_up_no_writer(cluster: Cluster) -> None:
    a = cluster.server()
    stalled = cluster.stream(a, "/db/changes", read=False).wait_ready()
    reading = cluster.stream(a, "/db/changes").wait_ready()
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: add_part(a, "x" * 90 + str(i)), range(1500)))
    assert time.monotonic() - started < 120  # writers went on (a stuck one would hang here)
    assert len(reading.take(1500, timeout=60)) == 1500
    stalled.resume_reading()  # it catches up from the database, in order, each once
    late = stalled.take(1500, timeout=60)
    assert ids(late) == ids(sorted(late, key=lambda e: int(e.id or 0)))
    assert len(set(ids(late))) == 1500


def test_the_streams_end_when_their_server_stops(cluster: Cluster) -> None:
    a = cluster.server()
    body = {"template_name": "chatty", "data": {}}
    assert a.client.post("/api/v2/programs/forever", json=body, headers=ADA).status_code == 201
    run = a.client.post("/api/v2/programs/forever/runs", headers=ADA).json()
    streams = [
        cluster.stream(a, path).wait_ready()
        for path in ("/db/changes", "/api/v2/runs/events", f"/api/v2/runs/{run['id']}/events")
    ]
    started = time.monotonic()
    a.terminate()  # waits for the exit: it would wait forever for open streams
    assert all(stream.ended.wait(10) for stream in streams), "a stream outlived its server"
    assert time.monotonic() - started < 10
    assert "Traceback" not in a.output()


def test_bad_resume_ids_are_refused_before_the_stream_starts(cluster: Cluster) -> None:
    a = cluster.server()
    for path, header in [
        ("/db/changes", "x"),
        ("/db/changes", "1.2"),
        ("/api/v2/runs/1/events", "1"),
    ]:
        response = a.client.get(path, headers={"Last-Event-ID": header})
        assert response.status_code in (404, 422), response.text
    assert a.client.get("/api/v2/runs/999/events").status_code == 404


def test_run_events_reach_a_client_of_another_server(cluster: Cluster) -> None:
    runner = cluster.server()
    other = cluster.server(PROGRAMS_RUNNER_EXECUTE="false")
    every = cluster.stream(other, "/api/v2/runs/events").wait_ready()
    body = {"template_name": "stamps", "data": {"lines": 5, "tick": 0.05}}
    assert other.client.post("/api/v2/programs/clock", json=body, headers=ADA).status_code == 201
    run = other.client.post("/api/v2/programs/clock/runs", headers=ADA).json()
    one = cluster.stream(other, f"/api/v2/runs/{run['id']}/events").wait_ready()
    events = one.rest(timeout=30)
    statuses = [e.json()["status"] for e in events if e.event == "status"]
    assert statuses[-1] == "completed" and events[-1].event == "status"
    lines = [e.json() for e in events if e.event == "output"]
    assert len(lines) == 5 and [line["seq"] for line in lines] == sorted(
        line["seq"] for line in lines
    )
    changes = [e.json()["status"] for e in every.take(3)]
    assert changes == ["queued", "running", "completed"]
    # A client that reconnects after the end gets the rest (nothing) and the final state.
    again = cluster.stream(
        runner, f"/api/v2/runs/{run['id']}/events", headers={"Last-Event-ID": events[-1].id or ""}
    )
    rest = again.wait_ready().rest()
    assert [e.event for e in rest] == ["status"] and rest[0].json()["status"] == "completed"
