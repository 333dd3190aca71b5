"""Server-Sent Events as the chat endpoint writes them.

Every event is one ``data:`` line of compact JSON (as the API reference shows it) followed by a
blank line; the stream always ends with ``data: [DONE]``::

    data: {"text":"I can help"}
    data: {"flowPatch":{"summary":"…","ops":[…],"flow":{…}}}
    data: {"error":{"code":"upstream_unavailable","message":"…"}}
    data: [DONE]
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

DONE = "data: [DONE]\n\n"

#: ``no-cache`` keeps caches from holding the stream; ``X-Accel-Buffering: no`` tells nginx-style
#: proxies not to buffer it (either would hold the first bytes back until the answer is complete).
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(payload: dict[str, Any]) -> str:
    """One ``data:`` event. JSON escapes newlines, so a payload never spans lines."""
    return "data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n\n"


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` over an async generator that is always closed, however the response ends.

    Starlette stops iterating when the client disconnects but leaves the generator suspended
    (on ASGI 2.4 servers it is closed only when garbage collected); closing it here runs its
    ``finally`` at once, which is where the chat saves a cut answer as partial.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str]) -> None:
        super().__init__(content, headers=SSE_HEADERS, media_type=self.media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
