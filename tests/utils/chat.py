"""Factories for chat tests: users with a saved Anthropic key, flows, and SSE parsing."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from capandex.engine.examples import sma_cross

GOOD_KEY = "sk-ant-api03-loopback-good-key"

#: DESIGN.md §4's example flow (valid), with the editor's UI state on one node.
SMA_FLOW: dict[str, Any] = sma_cross(10, 30, ("stop_loss", 2), sizePercent=100, settings={
    "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
    "initialCapital": 10000, "feeRate": 0.001, "slippage": 0.001})
SMA_FLOW["nodes"][0]["position"] = {"x": 0, "y": 0}


def sma_flow() -> dict[str, Any]:
    return copy.deepcopy(SMA_FLOW)


def save_key(user_id: uuid.UUID, api_key: str = GOOD_KEY) -> None:
    from capandex.db.session import transaction
    from capandex.keys.ai import save_ai_key

    with transaction(user_id) as conn:
        save_ai_key(conn, user_id=user_id, api_key=api_key)


def make_flow(user_id: uuid.UUID, document: dict[str, Any] | None = None) -> str:
    from capandex.db.session import transaction
    from capandex.flows.repository import create_flow

    document = document or sma_flow()
    with transaction(user_id) as conn:
        return create_flow(conn, user_id=user_id, name=document.get("name", "flow"), document=document)["id"]


def saved_messages(user_id: uuid.UUID, flow_id: str) -> list[dict[str, Any]]:
    from capandex.chat.repository import list_messages
    from capandex.db.session import transaction

    with transaction(user_id) as conn:
        return list_messages(conn, user_id=user_id, flow_id=flow_id)


def key_status(user_id: uuid.UUID) -> dict[str, Any]:
    """What ``GET /api/ai-keys`` shows for the user's Anthropic key."""
    from capandex.db.session import transaction
    from capandex.keys.ai import ai_key_status

    with transaction(user_id) as conn:
        return ai_key_status(conn, user_id=user_id)


def sse_payloads(body: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded (``[DONE]`` stays a string)."""
    out: list[Any] = []
    for block in body.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out
