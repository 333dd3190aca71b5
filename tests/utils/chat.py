"""Factories for chat tests: users with a saved Anthropic key, flows, and SSE parsing."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

GOOD_KEY = "sk-ant-api03-loopback-good-key"

#: DESIGN.md §4's example flow (valid).
SMA_FLOW: dict[str, Any] = {
    "name": "SMA cross",
    "settings": {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
                 "initialCapital": 10000, "feeRate": 0.001, "slippage": 0.001},
    "nodes": [
        {"id": "fast", "type": "indicator", "position": {"x": 0, "y": 0}, "data": {"kind": "sma", "period": 10}},
        {"id": "slow", "type": "indicator", "data": {"kind": "sma", "period": 30}},
        {"id": "up", "type": "condition", "data": {"operator": "crosses_above"}},
        {"id": "down", "type": "condition", "data": {"operator": "crosses_below"}},
        {"id": "buy", "type": "action", "data": {"action": "buy", "sizePercent": 100}},
        {"id": "sell", "type": "action", "data": {"action": "sell"}},
        {"id": "sl", "type": "risk", "data": {"kind": "stop_loss", "percent": 2}},
    ],
    "edges": [
        {"id": "e1", "source": "fast", "target": "up", "targetHandle": "a"},
        {"id": "e2", "source": "slow", "target": "up", "targetHandle": "b"},
        {"id": "e3", "source": "fast", "target": "down", "targetHandle": "a"},
        {"id": "e4", "source": "slow", "target": "down", "targetHandle": "b"},
        {"id": "e5", "source": "up", "target": "buy"},
        {"id": "e6", "source": "down", "target": "sell"},
    ],
}


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


def sse_payloads(body: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded (``[DONE]`` stays a string)."""
    out: list[Any] = []
    for block in body.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out
