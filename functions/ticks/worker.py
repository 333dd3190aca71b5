"""Tick worker Lambda: an SQS batch of ticks; failed records are reported for redelivery."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from capandex.live.ticks import handle_batch

    return handle_batch(event)
