"""The operator console as served: the page, its assets, offline, the path, bootstrap's switch."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from storage import database
from storage.bootstrap import bootstrap
from storage.console import _ASSETS, mount_console
from support.testclient import TestClient

ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


@pytest.fixture
def fresh_database() -> Iterator[None]:
    database.set_default_database(database.Database())
    yield
    database.get_database().dispose()


def console_app(path: str = "/console", root_path: str = "") -> TestClient:
    app = FastAPI()
    mount_console(app, path)
    return TestClient(app, root_path=root_path)


def assets() -> list[Path]:
    return sorted(item for item in _ASSETS.iterdir() if item.suffix in ASSET_TYPES)


@pytest.mark.parametrize("url", ["/console", "/console/", "/console/index.html"])
def test_the_page_is_served(url: str) -> None:
    response = console_app().get(url, follow_redirects=False)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<base href="/console/">' in response.text
    assert '<meta name="api-root" content="">' in response.text
    assert '<script type="module" src="app.js">' in response.text


@pytest.mark.parametrize("asset", [pytest.param(item, id=item.name) for item in assets()])
def test_each_asset_is_served_with_its_type(asset: Path) -> None:
    response = console_app().get(f"/console/{asset.name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(ASSET_TYPES[asset.suffix])
    if asset.suffix != ".html":
        assert response.content == asset.read_bytes()


def test_every_module_the_page_imports_is_there() -> None:
    names = {item.name for item in assets()}
    for asset in assets():
        for imported in re.findall(r'from "\./([^"]+)"', asset.read_text()):
            assert imported in names, f"{asset.name} imports {imported}"


@pytest.mark.parametrize("asset", [pytest.param(item, id=item.name) for item in assets()])
def test_nothing_comes_from_elsewhere(asset: Path) -> None:
    """Offline: no asset names another origin (no CDN, no web font, no analytics)."""
    text = asset.read_text()
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.I), asset.name
    assert "@import" not in text


def test_modules_stay_readable() -> None:
    for asset in assets():
        assert len(asset.read_text().splitlines()) <= 400, asset.name


def test_another_path_and_the_apps_root_path() -> None:
    # As a proxy that strips nothing sends it (uvicorn --root-path): the path holds the prefix.
    client = console_app("/panel/", root_path="/machine")
    page = client.get("/machine/panel")
    assert page.status_code == 200
    assert '<base href="/machine/panel/">' in page.text
    assert '<meta name="api-root" content="/machine">' in page.text
    assert client.get("/machine/panel/app.js").status_code == 200
    assert client.get("/machine/console/").status_code == 404


@pytest.mark.parametrize("path", ["console", "/", ""])
def test_a_path_that_cannot_hold_it_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        mount_console(FastAPI(), path)


@pytest.mark.usefixtures("fresh_database")
@pytest.mark.parametrize(
    ("option", "where"),
    [
        pytest.param(False, None, id="off-by-default"),
        pytest.param(True, "/console/", id="on"),
        pytest.param("/operator", "/operator/", id="at-a-path"),
    ],
)
def test_bootstrap_serves_it_when_asked(tmp_path: Path, option: bool | str, where: str) -> None:
    app = FastAPI()
    kwargs = {} if option is False else {"console": option}
    bootstrap(app, database_url=f"sqlite:///{tmp_path / 'app.db'}", **kwargs)
    with TestClient(app) as client:
        if where is None:
            assert client.get("/console/").status_code == 404
        else:
            assert client.get(where).status_code == 200
            assert client.get(f"{where}app.js").status_code == 200
        assert not any("/console" in path for path in client.get("/openapi.json").json()["paths"])
