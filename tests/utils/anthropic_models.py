"""A loopback Anthropic Models API (``GET /v1/models``) for the real ``anthropic`` SDK.

Speaks the real wire format: the page object (``data`` of ``{"type": "model", "id",
"display_name", "created_at"}``, ``has_more``, ``first_id``, ``last_id``; ``limit``, ``after_id``,
``before_id`` query parameters), ``request-id`` response headers, and Anthropic's error objects:
401 ``authentication_error`` for a missing/unknown key (``x-api-key`` or ``Authorization: Bearer``),
400 ``invalid_request_error`` without ``anthropic-version``. Point the SDK at it with ``ANTHROPIC_BASE_URL=server.url``.

    with AnthropicModelsServer(keys={"sk-ant-good"}) as server:
        ...
"""

from __future__ import annotations

import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.utils.http_server import LoopbackServer

MODELS = (
    {"type": "model", "id": "claude-sonnet-4-5-20250929", "display_name": "Claude Sonnet 4.5",
     "created_at": "2025-09-29T00:00:00Z"},
    {"type": "model", "id": "claude-opus-4-1-20250805", "display_name": "Claude Opus 4.1",
     "created_at": "2025-08-05T00:00:00Z"},
    {"type": "model", "id": "claude-3-5-haiku-20241022", "display_name": "Claude Haiku 3.5",
     "created_at": "2024-10-22T00:00:00Z"},
)


def error(status: int, kind: str, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return status, body, {"request-id": request_id}


class AnthropicModelsServer(LoopbackServer):
    """``GET /v1/models`` accepting the API keys in ``keys``; ``status_override`` forces an answer
    (e.g. ``(529, "overloaded_error")``) to exercise the client's error paths."""

    def __init__(self, keys: set[str] | frozenset[str] = frozenset()) -> None:
        self.keys = set(keys)
        self.status_override: tuple[int, str] | None = None
        self.seen_keys: list[str | None] = []
        super().__init__({("GET", "/v1/models"): self._models})

    def _models(self, request: BaseHTTPRequestHandler) -> tuple[int, Any, dict[str, str]]:
        # The API takes the key as ``x-api-key`` or (what anthropic SDK 2.x sends) a bearer token.
        bearer = request.headers.get("authorization") or ""
        api_key = request.headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
        self.seen_keys.append(api_key)
        if not request.headers.get("anthropic-version"):
            return error(400, "invalid_request_error", "anthropic-version: header is required")
        if api_key not in self.keys:
            return error(401, "authentication_error", "invalid x-api-key")
        if self.status_override:
            status, kind = self.status_override
            return error(status, kind, kind.replace("_", " "))
        return 200, self._page(parse_qs(urlsplit(request.path).query)), {"request-id": f"req_{uuid.uuid4().hex[:24]}"}

    @staticmethod
    def _page(query: dict[str, list[str]]) -> dict[str, Any]:
        limit = max(1, min(1000, int(query.get("limit", ["20"])[0])))
        ids = [m["id"] for m in MODELS]
        start, end = 0, len(MODELS)
        if "after_id" in query and query["after_id"][0] in ids:
            start = ids.index(query["after_id"][0]) + 1
        if "before_id" in query and query["before_id"][0] in ids:
            end = ids.index(query["before_id"][0])
            start = max(start, end - limit)
        page = list(MODELS[start:end][:limit])
        return {"data": page, "has_more": start + len(page) < end,
                "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None}
