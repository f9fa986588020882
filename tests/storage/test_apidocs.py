"""``/docs`` and ``/redoc`` with their assets served by the app (``storage.apidocs``).

The pages must name no address outside the app, the files they name must be served, and the
app's own settings (pages turned off, URLs, title, Swagger UI parameters) must be kept. The
pages working in a real browser with the network cut: ``tests/examples/test_api_docs.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from storage.apidocs import ASSETS_URL, serve_docs_offline
from storage.bootstrap import bootstrap
from support.testclient import TestClient

# What each asset must be served as, and what its first bytes hold.
ASSETS = {
    "swagger-ui-bundle.js": ("javascript", "SwaggerUIBundle"),
    "swagger-ui.css": ("text/css", ".swagger-ui"),
    "redoc.standalone.js": ("javascript", "Redoc"),
    "favicon.png": ("image/png", "PNG"),
}


def local_urls(page: str) -> list[str]:
    """Every URL the page loads: scripts, styles, icons, the OpenAPI document."""
    found = re.findall(r'(?:src|href|spec-url)="([^"]*)"|\burl: \'([^\']*)\'', page)
    return [src or url for src, url in found]


def offline_app(**settings: Any) -> FastAPI:
    app = FastAPI(**settings)
    serve_docs_offline(app)
    return app


@pytest.mark.parametrize(
    ("page", "files"),
    [
        pytest.param("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}, id="docs"),
        pytest.param("/redoc", {"redoc.standalone.js", "favicon.png"}, id="redoc"),
    ],
)
def test_a_page_loads_only_files_the_app_serves(page: str, files: set[str]) -> None:
    client = TestClient(offline_app())
    response = client.get(page)
    html = response.text
    assert "https://" not in html and "http://" not in html, html
    urls = local_urls(html)
    assert {url.removeprefix(f"{ASSETS_URL}/") for url in urls} == {*files, "/openapi.json"}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        name = url.rsplit("/", 1)[-1]
        if name in ASSETS:
            content_type, marker = ASSETS[name]
            assert content_type in response.headers["content-type"]
            assert marker.encode() in response.content[:1024]  # the file itself, not an error


def test_the_redoc_page_fetches_images_only_from_the_app() -> None:
    # ReDoc's menu shows the Redocly logo from the internet; the policy keeps it from loading.
    response = TestClient(offline_app()).get("/redoc")
    assert response.headers["content-security-policy"] == "img-src 'self' data: blob:"


def test_the_app_settings_are_kept() -> None:
    app = offline_app(
        title="Cell 4",
        docs_url="/api-docs",
        redoc_url=None,
        openapi_url="/spec.json",
        swagger_ui_parameters={"deepLinking": False},
        swagger_ui_oauth2_redirect_url="/api-docs/callback",
        swagger_ui_init_oauth={"clientId": "hmi"},
    )
    client = TestClient(app, root_path="/line-2")
    html = client.get("/api-docs").text
    assert "<title>Cell 4 - Swagger UI</title>" in html
    assert "url: '/line-2/spec.json'" in html
    assert '"deepLinking": false' in html and '"clientId": "hmi"' in html
    assert "'/line-2/api-docs/callback'" in html
    assert f'src="/line-2{ASSETS_URL}/swagger-ui-bundle.js"' in html
    assert client.get(f"/line-2{ASSETS_URL}/swagger-ui.css").status_code == 200
    assert client.get("/api-docs/callback").status_code == 200  # FastAPI's page, no assets
    assert client.get("/redoc").status_code == 404
    assert client.get("/docs").status_code == 404


def test_without_an_oauth2_redirect_page_the_page_names_none() -> None:
    client = TestClient(offline_app(swagger_ui_oauth2_redirect_url=None))
    assert "oauth2RedirectUrl" not in client.get("/docs").text
    assert client.get("/docs/oauth2-redirect").status_code == 404


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"docs_url": None, "redoc_url": None}, id="both-pages-off"),
        pytest.param({"openapi_url": None}, id="no-openapi"),
    ],
)
def test_pages_the_app_turned_off_stay_off(settings: dict[str, Any]) -> None:
    client = TestClient(offline_app(**settings))
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get(f"{ASSETS_URL}/swagger-ui.css").status_code == 404


def test_the_assets_come_before_a_catch_all_route_and_a_second_call_changes_nothing() -> None:
    app = FastAPI()

    @app.get("/{path:path}")
    def anything(path: str) -> str:
        return "the app's"

    serve_docs_offline(app)
    routes = list(app.router.routes)
    serve_docs_offline(app)
    assert [getattr(route, "path", None) for route in app.router.routes] == [
        getattr(route, "path", None) for route in routes
    ]
    client = TestClient(app)
    css = client.get(f"{ASSETS_URL}/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")
    assert ASSETS_URL in client.get("/docs").text


def test_bootstrap_serves_the_docs_offline_by_default(sqlite_db: Path) -> None:
    app = FastAPI()
    bootstrap(app)
    client = TestClient(app)
    html = client.get("/docs").text
    assert "cdn.jsdelivr.net" not in html and f"{ASSETS_URL}/swagger-ui-bundle.js" in html
    assert "/db/health" in client.get("/openapi.json").json()["paths"]
    assert ASSETS_URL not in str(client.get("/openapi.json").json())


def test_bootstrap_keeps_fastapis_cdn_pages_on_request(sqlite_db: Path) -> None:
    app = FastAPI()
    bootstrap(app, offline_docs=False)
    client = TestClient(app)
    assert "https://cdn.jsdelivr.net/" in client.get("/docs").text
    assert "https://cdn.jsdelivr.net/" in client.get("/redoc").text
    assert client.get(f"{ASSETS_URL}/swagger-ui.css").status_code == 404
