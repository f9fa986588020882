"""API docs that work without internet: ``/docs`` and ``/redoc`` with assets served by the app.

FastAPI's Swagger UI and ReDoc pages load their JavaScript and CSS from a CDN, so on a factory
network with no internet they stay blank. :func:`serve_docs_offline` points both pages of an
existing app at copies served from the installed ``fastapi-offline`` package (Swagger UI,
ReDoc and the favicon), mounted at :data:`ASSETS_URL`. ``bootstrap()`` calls it unless
``offline_docs=False``.

The app's own settings are kept: ``docs_url``/``redoc_url`` (a page the app turned off stays
off), ``openapi_url``, ``root_path``, ``title``, ``swagger_ui_parameters``,
``swagger_ui_init_oauth`` and ``swagger_ui_oauth2_redirect_url`` (that page has no assets and
is left as it is).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "serve_docs_offline"]

ASSETS_URL = "/_storage/docs-assets"
"""Where the Swagger UI and ReDoc files are served (below the app's ``root_path``)."""

# The package that ships the assets, and its folder that holds them.
_ASSETS_PACKAGE = ("fastapi_offline", "static")

# FastAPI names its page routes after their endpoints; the replacements keep the names, so
# ``url_for("swagger_ui_html")`` still works and a second call replaces the first's pages.
_SWAGGER_PAGE = "swagger_ui_html"
_REDOC_PAGE = "redoc_html"

_REDOC_POLICY = "img-src 'self' data: blob:"

_Page = Callable[[Request], Awaitable[HTMLResponse]]


def serve_docs_offline(app: FastAPI, *, assets_url: str = ASSETS_URL) -> None:
    """Serve the app's Swagger UI and ReDoc pages with assets from the installed package.

    Replaces the pages FastAPI added at ``app.docs_url`` and ``app.redoc_url`` in place (so
    the order of routes is kept) and mounts the assets at ``assets_url``. Pages the app turned
    off (``None``), or an app without ``openapi_url``, get nothing. Calling it again is harmless.

    Args:
        app: an app built with ``FastAPI(...)``.
        assets_url: the path the asset files are served at.
    """
    pages: dict[str, _Page] = {
        _SWAGGER_PAGE: _swagger_page(app, assets_url),
        _REDOC_PAGE: _redoc_page(app, assets_url),
    }
    routes = app.router.routes
    replaced: list[int] = []
    for index, route in enumerate(routes):
        if isinstance(route, Route) and _is_page(app, route):
            routes[index] = Route(
                route.path, pages[route.name], name=route.name, include_in_schema=False
            )
            replaced.append(index)
    mounted = any(isinstance(route, Mount) and route.path == assets_url for route in routes)
    if replaced and not mounted:
        # Next to the pages, ahead of any catch-all route or mount the app added later.
        assets = StaticFiles(packages=[_ASSETS_PACKAGE])
        routes.insert(replaced[0], Mount(assets_url, app=assets, name="storage_docs_assets"))


def _is_page(app: FastAPI, route: Route) -> bool:
    """Whether the route is one of FastAPI's docs pages that the app has turned on."""
    urls = {_SWAGGER_PAGE: app.docs_url, _REDOC_PAGE: app.redoc_url}
    return app.openapi_url is not None and urls.get(route.name) == route.path


def _root(request: Request) -> str:
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/")


def _swagger_page(app: FastAPI, assets_url: str) -> _Page:
    # The app's settings are read per request, as FastAPI's own page does.
    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root = _root(request)
        redirect_url = app.swagger_ui_oauth2_redirect_url
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{assets_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets_url}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets_url}/favicon.png",
            oauth2_redirect_url=f"{root}{redirect_url}" if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    return swagger_ui_html


def _redoc_page(app: FastAPI, assets_url: str) -> _Page:
    async def redoc_html(request: Request) -> HTMLResponse:
        root = _root(request)
        response = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{assets_url}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{assets_url}/favicon.png",
            with_google_fonts=False,  # fonts from the internet; ReDoc falls back to local ones
        )
        # ReDoc's menu always shows the Redocly logo, fetched from the internet; images from
        # the app alone keep the page from reaching out (the logo hides itself when blocked).
        response.headers["Content-Security-Policy"] = _REDOC_POLICY
        return response

    return redoc_html
