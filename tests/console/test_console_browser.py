"""The operator console in a real Chromium against the example machine app under uvicorn: what
an operator does at the panel, and what another client changes meanwhile. Each page leaves a
1280x800 screenshot in test-artifacts/console/ for review."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from support.console import Console
from support.servers import Server

expect = pytest.importorskip("playwright.sync_api").expect
OTHER = {"X-User": "bob"}


def post(server: Server, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = server.client.post(path, json=body, headers=OTHER)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_browse_filter_sort_page_and_pick_columns(console: Console, server: Server) -> None:
    for number in range(1, 13):
        post(server, "/workcells/", {"name": f"Cell {number:02}", "location": f"Hall {number % 2}"})
    page = console.open("#/data/workcells")
    rows = page.locator("table.records tbody tr")
    expect(rows).to_have_count(12)
    page.get_by_label("Rows per page").select_option("10")
    expect(rows).to_have_count(10)
    expect(page.get_by_text("Page 1 · 10 shown of 12")).to_be_visible()
    page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(2)
    page.get_by_role("button", name="Previous page").click()
    expect(rows).to_have_count(10)

    page.get_by_label("Field").select_option("location")
    page.get_by_label("Value").fill("Hall 1")
    page.get_by_role("button", name="Add filter").click()
    expect(rows).to_have_count(6)
    page.get_by_role("button", name="name", exact=True).click()  # sort ascending
    page.get_by_role("button", name="name ▲").click()  # then descending
    expect(rows.first).to_contain_text("Cell 11")
    expect(page.locator('th[aria-sort="descending"]')).to_have_text("name ▼")

    page.get_by_text("Columns", exact=True).click()
    page.get_by_role("checkbox", name="location").uncheck()
    expect(page.locator("table.records thead th")).to_have_count(2)
    assert console.fits()
    assert console.small_targets() == []
    assert page.get_by_label("Value").evaluate("(item) => item.labels.length") == 1
    console.screenshot("data-table")
    page.get_by_role("checkbox", name="location").check()


def test_edit_a_record_and_resolve_a_conflict(console: Console, server: Server) -> None:
    post(server, "/tools/", {"name": "gripper-a", "kind": "gripper", "max_payload_kg": 1.0})
    page = console.open("#/data/tools/gripper-a")
    expect(page.locator(".live")).to_have_text("Live")
    page.get_by_label("Max Payload Kg").fill("2.5")
    # Another client changes the record after the operator opened it.
    other = server.client.patch("/tools/gripper-a", json={"kind": "vacuum"}, headers=OTHER)
    assert other.status_code == 200
    expect(page.get_by_text("bob changed this record (update)")).to_be_visible()
    page.get_by_role("button", name="Save").click()

    conflict = page.get_by_role("region", name="Conflict")
    expect(conflict).to_be_visible()
    expect(conflict.locator("tr", has_text="max_payload_kg")).to_contain_text("2.5")
    expect(conflict.locator("tr", has_text="kind")).to_contain_text("vacuum")
    assert console.fits()
    console.screenshot("record-conflict")
    conflict.get_by_role("button", name="Keep my version").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    assert server.client.get("/tools/gripper-a").json() == {
        "name": "gripper-a", "kind": "vacuum", "max_payload_kg": 2.5
    }  # fmt: skip

    events = page.locator(".history li.event")
    expect(events).to_have_count(3)
    expect(events.first).to_contain_text("update by ada")
    expect(events.first.locator("tr", has_text="max_payload_kg")).to_contain_text("2.5")
    console.screenshot("record")


def test_create_delete_and_restore(console: Console, server: Server) -> None:
    page = console.open("#/data/machines/new")
    page.get_by_role("button", name="Create").click()
    expect(page.locator(".field-error", has_text="Field required")).to_be_visible()
    page.get_by_label("Serial").fill("arm-7")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("main h1")).to_have_text(re.compile(r"machines \d+"))
    expect(page.get_by_label("Serial")).to_have_value("ARM-7")
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("button", name="Restore")).to_be_visible()
    page.get_by_role("button", name="Restore").click()
    expect(page.get_by_role("button", name="Delete")).to_be_visible()
    expect(page.locator(".history li.event")).to_have_count(3)


def test_a_change_by_another_client_appears_without_reloading(
    console: Console, server: Server
) -> None:
    page = console.open("#/data/machines")
    expect(page.locator(".live")).to_have_text("Live")
    page.evaluate("window.notReloaded = true")
    post(server, "/machines/", {"serial": "live-001", "kind": "conveyor"})
    expect(page.locator("table.records tbody tr", has_text="LIVE-001")).to_be_visible()
    assert page.evaluate("window.notReloaded") is True


def test_store_start_watch_and_stop_a_program(console: Console, server: Server) -> None:
    page = console.open("#/programs")
    assert console.fits()
    console.screenshot("programs")
    page.get_by_role("link", name="New Jog the conveyor program").click()
    page.get_by_label("Program name").fill("jog")
    page.get_by_label("Steps").fill("0")
    page.get_by_role("button", name="Store program").click()
    steps_error = page.locator(".field", has=page.get_by_label("Steps")).locator(".field-error")
    expect(steps_error).to_contain_text("greater than or equal to 1")
    expect(page.get_by_label("Steps")).to_have_attribute("aria-invalid", "true")
    console.screenshot("program-form")
    page.get_by_label("Steps").fill("200")
    page.get_by_label("Step Seconds").fill("0.2")
    page.get_by_role("button", name="Store program").click()
    expect(page.locator("main h1")).to_have_text("Program jog")

    page.get_by_role("button", name="Start").click()
    expect(page.locator("main h1")).to_have_text(re.compile(r"Run \d+"))
    output = page.get_by_role("log", name="Output")
    expect(output).to_contain_text("conveyor step 3 of 200", timeout=15_000)
    expect(page.locator("#run-status")).to_have_text("running")
    assert console.small_targets() == []
    console.screenshot("run")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=15_000)
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    lines = output.inner_text().splitlines()
    assert lines[:3] == [f"conveyor step {n} of 200" for n in (1, 2, 3)]

    page.get_by_role("link", name="← Runs").click()
    page.get_by_role("checkbox", name="cancelled").check()
    expect(page.locator("table.records tbody tr", has_text="jog")).to_have_count(1)
    page.get_by_label("Program").select_option("jog")
    expect(page.locator("table.records tbody tr")).to_have_count(1)
    page.get_by_label("Program").select_option("")
    expect(page.locator("table.records tbody tr", has_text="jog")).to_have_count(1)
    console.screenshot("runs")


def test_download_a_backup_and_restore_it_after_a_dry_run(
    console: Console, server: Server, tmp_path: Path
) -> None:
    page = console.open("#/database")
    expect(page.locator("#health")).to_contain_text("ok sqlite")
    expect(page.locator("#schema-check")).to_have_text("matches the models")
    expect(page.locator(".diagram img")).to_be_visible(timeout=20_000)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download backup").click()
    backup = tmp_path / download.value.suggested_filename
    download.value.save_as(backup)
    assert backup.read_bytes().startswith(b"SQLite format 3\x00")
    post(server, "/workcells/", {"name": "after the backup"})

    restore = page.get_by_role("form", name="Restore a backup")
    apply = restore.get_by_role("button", name="Restore")
    restore.get_by_label("File").set_input_files(backup)
    expect(apply).to_be_disabled()
    restore.get_by_role("button", name="Check (dry run)").click()
    expect(restore.get_by_text("Dry run passed")).to_be_visible()
    expect(restore.locator("tr", has_text="workcell")).to_be_visible()
    assert server.client.get("/workcells/", params={"name": "after the backup"}).json()
    assert console.fits()
    console.screenshot("database")
    apply.click()
    expect(restore.get_by_text("Done")).to_be_visible()
    assert server.client.get("/workcells/", params={"name": "after the backup"}).json() == []


def test_the_audit_log_filters_and_follows(console: Console, server: Server) -> None:
    page = console.open("#/audit")
    page.get_by_label("Actor").fill("bob")
    page.get_by_label("Operation").select_option("create")
    page.get_by_role("button", name="Show").click()
    events = page.locator("ol.events > li")
    expect(events.first).to_contain_text("create by bob")
    expect(page.locator(".live")).to_have_text("Following live")
    before = events.count()
    post(server, "/workcells/", {"name": "audited live"})
    expect(events).to_have_count(before + 1)
    expect(events.first).to_contain_text("audited live")
    assert all("by bob" in text for text in events.all_inner_texts())
    assert console.fits()
    console.screenshot("audit")


def test_the_audit_chain_is_verified_at_a_click(console: Console, server: Server) -> None:
    page = console.open("#/audit")
    page.get_by_role("button", name="Verify chain").click()
    result = page.locator(".verify .message")
    expect(result).to_contain_text("Chain intact")
    expect(result).to_contain_text(re.compile(r"head [0-9a-f]{64}"))
    assert console.fits()
