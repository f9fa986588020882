"""The run streams through the app: a run's state and lines, every run's changes of state,
resuming, and the refusals; on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json

from support.runs import Serve, start, wait_for, wait_running

ADA = {"X-User": "ada"}


def events(text: str) -> list[tuple[str, str, dict[str, object]]]:
    parsed = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "data" in fields:
            parsed.append((fields["event"], fields["id"], json.loads(fields["data"])))
    return parsed


def test_a_run_streams_its_state_and_lines_and_ends(serve: Serve) -> None:
    with serve() as client:
        run = start(client, "greet")
        wait_for(client, run["id"])
        got = events(client.get(f"/api/v2/runs/{run['id']}/events").text)
    kinds = [kind for kind, _, _ in got]
    assert kinds[-1] == "status" and got[-1][2]["status"] == "completed"
    assert "output" in kinds and "log" in kinds
    lines = [data for kind, _, data in got if kind in ("output", "log")]
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
    assert all(event_id.count(".") == 1 for _, event_id, _ in got)


def test_every_run_changes_state_on_one_stream(serve: Serve) -> None:
    with serve() as client:
        run = start(client, "greet")
        wait_for(client, run["id"])
        got = events(client.get("/api/v2/runs/events?after=0&follow=false").text)
    mine = [data["status"] for kind, _, data in got if data["id"] == run["id"]]
    assert mine == ["queued", "running", "completed"]
    assert {kind for kind, _, _ in got} == {"status"}
    assert "logs" not in got[0][2]  # a run as lists show it


def test_a_stop_request_is_a_state_change(serve: Serve) -> None:
    with serve() as client:
        run = start(client, "wait_async")
        wait_running(client, run["id"])
        client.post(f"/api/v2/runs/{run['id']}/stop", headers=ADA)
        wait_for(client, run["id"])
        got = events(client.get("/api/v2/runs/events?after=0&follow=false").text)
    states = [(data["status"], data["stop_requested_at"] is not None) for _, _, data in got]
    assert states[-1] == ("cancelled", True)


def test_resuming_an_ended_run_sends_the_rest_and_the_final_state(serve: Serve) -> None:
    with serve() as client:
        run = start(client, "greet")
        wait_for(client, run["id"])
        got = events(client.get(f"/api/v2/runs/{run['id']}/events").text)
        middle = got[1][1]
        rest = events(
            client.get(f"/api/v2/runs/{run['id']}/events", headers={"Last-Event-ID": middle}).text
        )
    assert [event_id for _, event_id, _ in rest[:-1]] == [
        event_id for kind, event_id, _ in got[2:] if kind != "status"
    ]
    assert rest[-1][0] == "status" and rest[-1][2]["status"] == "completed"


def test_refusals(serve: Serve) -> None:
    with serve() as client:
        assert client.get("/api/v2/runs/12345/events").status_code == 404
        run = start(client, "greet")
        bad = client.get(f"/api/v2/runs/{run['id']}/events", headers={"Last-Event-ID": "7"})
        assert bad.status_code == 422
        assert (
            client.get("/api/v2/runs/events", headers={"Last-Event-ID": "1.1"}).status_code == 422
        )
        wait_for(client, run["id"])
