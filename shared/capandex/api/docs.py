"""Interactive API docs that work offline: Swagger UI at ``/api/docs``, ReDoc at ``/api/redoc``.

FastAPI's pages load their scripts from a CDN, so without internet they are blank. ``capandex
serve`` serves the assets itself from the ``fastapi-offline`` package (MIT), which ships the
Swagger UI and ReDoc bundles (installed with the ``local`` extra, as ``scripts/serve`` does). Only
the local server publishes docs: in AWS, API Gateway routes no docs path to a function.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

OPENAPI_URL = "/api/openapi.json"
DOCS_URL, REDOC_URL = "/api/docs", "/api/redoc"
#: where the bundled assets are served; only these files, never a path built from the request
ASSETS_URL = "/api/docs/assets/"
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}
TITLE = "Capandex API"


def assets_dir() -> Path | None:
    """The folder of the bundled assets, or None when ``fastapi-offline`` is not installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    return Path(fastapi_offline.__file__).parent / "static"


def docs_response(path: str) -> Response | None:
    """The answer for ``path`` if it is a docs page or asset, else None."""
    if path not in (DOCS_URL, REDOC_URL) and not path.startswith(ASSETS_URL):
        return None
    folder = assets_dir()
    if folder is None:
        message = "The API docs need the fastapi-offline package: pip install 'capandex[local]'."
        return JSONResponse({"error": {"code": "not_available", "message": message}}, status_code=503)
    if path == DOCS_URL:
        return _swagger_ui()
    if path == REDOC_URL:
        return _redoc()
    name = path.removeprefix(ASSETS_URL)
    if name not in ASSETS:
        return JSONResponse({"error": {"code": "not_found", "message": "No such route."}}, status_code=404)
    # the bundles change only with the package: let the browser keep them for a day
    return FileResponse(folder / name, media_type=ASSETS[name], headers={"cache-control": "max-age=86400"})


def _swagger_ui() -> HTMLResponse:
    from fastapi.openapi.docs import get_swagger_ui_html

    # persistAuthorization: the token pasted into Authorize survives a reload
    return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{TITLE} - Swagger UI",
                               swagger_js_url=ASSETS_URL + "swagger-ui-bundle.js",
                               swagger_css_url=ASSETS_URL + "swagger-ui.css",
                               swagger_favicon_url=ASSETS_URL + "favicon.png",
                               swagger_ui_parameters={"persistAuthorization": True})


def _redoc() -> HTMLResponse:
    from fastapi.openapi.docs import get_redoc_html

    return get_redoc_html(openapi_url=OPENAPI_URL, title=f"{TITLE} - ReDoc",
                          redoc_js_url=ASSETS_URL + "redoc.standalone.js",
                          redoc_favicon_url=ASSETS_URL + "favicon.png", with_google_fonts=False)
