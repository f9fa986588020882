"""The example machine app's API docs in a real headless Chromium with the network cut: every
request that leaves the server's origin is aborted and fails the test, and ``/docs`` (Swagger
UI) and ``/redoc`` still list every operation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.servers import Server, machine_app

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

# What marks one operation on each page, and the one that must be among them.
PAGES = [
    pytest.param("/docs", ".opblock", id="swagger-ui"),
    pytest.param("/redoc", '[data-section-id^="operation/"]', id="redoc"),
]


@dataclass
class Traffic:
    """What the page asked for: served by the app, aborted (not the app), or went wrong."""

    origin: str
    served: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def route(self, route: object) -> None:
        url: str = route.request.url  # type: ignore[attr-defined]
        if url.startswith(f"{self.origin}/"):
            self.served.append(url)
            route.continue_()  # type: ignore[attr-defined]
        else:
            self.aborted.append(url)
            route.abort("internetdisconnected")  # type: ignore[attr-defined]

    def response(self, response: object) -> None:
        if response.status >= 400:  # type: ignore[attr-defined]
            self.errors.append(f"{response.status} {response.url}")  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path: Path = tmp_path_factory.mktemp("api-docs") / "machine.db"
    with machine_app(f"sqlite:///{path}") as server:
        yield server


@pytest.mark.parametrize(("path", "operation"), PAGES)
def test_the_docs_list_every_operation_with_the_network_cut(
    browser: object, server: Server, path: str, operation: str
) -> None:
    spec = server.client.get("/openapi.json").json()
    operations = sum(len(METHODS & set(item)) for item in spec["paths"].values())
    traffic = Traffic(origin=str(server.client.base_url).rstrip("/"))
    context = browser.new_context()  # type: ignore[attr-defined]
    context.route("**/*", traffic.route)
    page = context.new_page()
    page.on("response", traffic.response)
    page.on("pageerror", lambda error: traffic.errors.append(str(error)))
    try:
        page.goto(f"{traffic.origin}{path}", wait_until="networkidle")
        assert traffic.aborted == []
        assert traffic.errors == []
        page.locator(operation, has_text="/db/health").first.wait_for(timeout=30_000)
        assert page.locator(operation).count() == operations
    finally:
        context.close()
    assert traffic.aborted == [] and traffic.errors == []
    assert any("/_storage/docs-assets/" in url for url in traffic.served)
