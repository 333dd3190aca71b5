"""Tick scheduler Lambda: EventBridge (rate 1 minute) → one SQS message per due execution."""

from __future__ import annotations

from typing import Any

from capandex.runtime import lambda_entry


@lambda_entry("ticks-scheduler", correlation=lambda event: event.get("id"), requires=("tick_queue_url",),
              traced=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    import datetime as dt

    from capandex.live.ticks import schedule

    # the scheduled event's own time, so a delayed invocation still names the right candle
    at = event.get("time")
    now_ms = int(dt.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000) if at else None
    return {"enqueued": schedule(now_ms=now_ms)}
