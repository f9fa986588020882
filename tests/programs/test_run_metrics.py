"""Run metrics: programs adds runs by status and their duration to an app's metrics."""

from __future__ import annotations

import time

from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from programs import ProgramStore, RunnerConfig, setup
from storage.metrics import StorageMetrics, install
from support.runs import wait_for
from support.testclient import TestClient


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }


def test_runs_are_counted_by_status_and_timed(run_store: ProgramStore) -> None:
    app = FastAPI()
    install(app, StorageMetrics())
    setup(app, run_store, runner=RunnerConfig())
    with TestClient(app) as client:
        run = client.post("/api/v2/programs/greet/runs", headers={"X-User": "ada"}).json()
        wait_for(client, run["id"])
        deadline = time.monotonic() + 5  # the duration is observed just after the end is saved
        while True:
            found = scrape(client)
            timed = ("programs_run_duration_seconds_count", (("status", "completed"),))
            if timed in found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert found[("programs_runs", (("status", "completed"),))] == 1
    assert found[("programs_runs", (("status", "failed"),))] == 0
    assert found[("programs_run_duration_seconds_count", (("status", "completed"),))] == 1
