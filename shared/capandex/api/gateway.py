"""One ASGI app that routes to every function app, as API Gateway does in AWS.

Used by ``capandex serve`` and by the end-to-end tests. It also serves the merged OpenAPI
document of all functions at ``/api/openapi.json``, and Swagger UI at ``/api/docs`` and ReDoc at
``/api/redoc`` with their assets (:mod:`capandex.api.docs`: no CDN, so they work offline).
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI
from starlette.responses import HTMLResponse, JSONResponse
from starlette.types import Receive, Scope, Send

from capandex.api.docs import OPENAPI_URL, docs_response
from capandex.api.functions import ROUTES, available_groups, load_function
from capandex.api.openapi import merge_documents


def merged_openapi(apps: dict[str, FastAPI]) -> dict[str, Any]:
    """Every function's OpenAPI document in one (refusing two schemas under one name)."""
    return merge_documents((group, app.openapi()) for group, app in apps.items())


class Gateway:
    """Dispatch each request to the function app that owns its path prefix."""

    def __init__(self, groups: list[str] | None = None) -> None:
        self.apps = {g: load_function(g).app for g in (groups or available_groups())}
        owned = [(p, g) for g, ps in ROUTES.items() if g in self.apps for p in ps]
        self.templates = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), g) for p, g in owned if "{" in p]
        self.prefixes = sorted(((p, g) for p, g in owned if "{" not in p), key=lambda pg: -len(pg[0]))
        self._openapi: dict[str, Any] | None = None

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = merged_openapi(self.apps)
        return self._openapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _accept_lifespan(receive, send)
            return
        path = scope.get("path", "")
        if path == OPENAPI_URL:
            await JSONResponse(self.openapi())(scope, receive, send)
            return
        docs = docs_response(path) if scope["type"] == "http" else None
        if docs is not None:
            await docs(scope, receive, send)
            return
        for pattern, group in self.templates:
            if pattern.match(path):
                await self.apps[group](scope, receive, send)
                return
        for prefix, group in self.prefixes:
            if path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?"):
                await self.apps[group](scope, receive, send)
                return
        if scope["type"] == "http":
            body = json.dumps({"error": {"code": "not_found", "message": "No such route."}})
            await HTMLResponse(body, status_code=404, media_type="application/json")(scope, receive, send)


async def _accept_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
