"""The console with the app's own auth (a RouteAuth bearer-token guard on writes, in a real
server): without the token, writes and the database's admin actions are not offered (the
console asks GET /db/access/{level} first); with it the same write goes through, recorded
under the operator's name."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.console import console_page
from support.servers import ROOT, Server, server_process

expect = pytest.importorskip("playwright.sync_api").expect
TOKEN = "panel-secret"
BOB = {"X-User": "bob", "Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "STORAGE_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('guarded') / 'cell.db'}",
        "PYTHONPATH": str(ROOT / "tests"),
        "CELL_APP_TOKEN": TOKEN,
    }
    with server_process(["tests/e2e/cell_app.py"], env=env, ready_path="/db/health") as server:
        yield server


def count_of(server: Server, part: int) -> int:
    value: int = server.client.get(f"/parts/{part}").json()["count"]
    return value


def test_writes_follow_the_apps_route_auth(browser: Any, guarded: Server) -> None:
    part = guarded.client.post("/parts/", json={"name": "bolt"}, headers=BOB).json()["id"]
    base = str(guarded.client.base_url)
    with console_page(browser, base) as console:  # no token: asked up front, not offered
        page = console.open(f"#/data/parts/{part}")
        expect(page.get_by_label("Count")).to_have_value("0")
        expect(page.get_by_role("button", name="Save")).to_have_count(0)
        expect(page.get_by_role("button", name="Delete")).to_have_count(0)
        page = console.open("#/database")
        expect(page.locator("#health")).to_contain_text("ok sqlite")
        expect(page.get_by_role("button", name="Download backup")).to_have_count(0)
        expect(page.get_by_text("Your token may not back up or restore.")).to_be_visible()
    assert count_of(guarded, part) == 0
    with console_page(browser, base, token=TOKEN) as console:
        page = console.open(f"#/data/parts/{part}")
        page.get_by_label("Count").fill("5")
        page.get_by_role("button", name="Save").click()
        deadline = time.monotonic() + 10
        while count_of(guarded, part) != 5 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert count_of(guarded, part) == 5
    audit = guarded.client.get("/db/audit", params={"component": "parts", "limit": 1}).json()
    assert (audit[0]["operation"], audit[0]["actor"]) == ("update", "ada")
