"""``/docs`` (Swagger UI) and ``/redoc`` without a CDN: their JavaScript and CSS are served by the
service itself, from ``ServiceConfig.docs_assets`` or, by default, from the files the
``fastapi-offline`` package ships (``pip install 'funnel-retriever[docs]'``: 2.7 MB of Swagger UI and
Redoc). Without either, the two pages say so and link the OpenAPI document (``/openapi.json``), which
never needs them: a browser without network access never waits on a CDN.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
MISSING = """<!doctype html><html><head><title>funnel API docs</title></head><body>
<h1>funnel API docs</h1><p>This server has no local copy of the {page} files, and loads nothing from a CDN.
Install them with <code>pip install 'funnel-retriever[docs]'</code> (the fastapi-offline package), or give
the server a directory holding {files}.</p><p>The API itself is described by
<a href="/openapi.json">/openapi.json</a> (and docs/http-api.md).</p></body></html>"""


def default_assets() -> Path | None:
    """The directory of fastapi-offline's Swagger UI and Redoc files, when that package is installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    static = Path(fastapi_offline.__file__).parent / "static"
    return static if all((static / f).is_file() for f in ASSET_FILES) else None


def install_docs(app: FastAPI, assets: Path | None) -> None:
    """Add ``/docs``, its OAuth2 redirect and ``/redoc`` to ``app`` (created with ``docs_url=None``,
    ``redoc_url=None``), serving ``assets`` (default: :func:`default_assets`) at :data:`ASSETS_URL`."""
    where = assets if assets is not None else default_assets()
    if where is not None:
        app.mount(ASSETS_URL, StaticFiles(directory=where), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        if where is None:
            return HTMLResponse(MISSING.format(page="Swagger UI", files=", ".join(ASSET_FILES[:2])))
        return get_swagger_ui_html(openapi_url="/openapi.json", title="funnel - Swagger UI",
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_URL}/swagger-ui.css", swagger_favicon_url="")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        if where is None:
            return HTMLResponse(MISSING.format(page="Redoc", files=ASSET_FILES[2]))
        return get_redoc_html(openapi_url="/openapi.json", title="funnel - ReDoc",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js", redoc_favicon_url="",
                              with_google_fonts=False)
