"""The scheduler's pass: which running executions have a newly closed candle.

EventBridge invokes it once a minute; it reads every running execution (one indexed query) and
yields one message per execution whose timeframe closed a candle after the last one it
processed. The message names the candle, so a late or repeated pass produces the very same
message and the worker's tick record makes the repeat a no-op.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from capandex.db.schema import executions
from capandex.live.timeframes import last_closed_open, timeframe_ms


def due_ticks(conn: Connection, now_ms: int, *, paper_only: bool = False) -> list[dict[str, Any]]:
    """``[{"executionId", "candleMs", "mode"}]`` for every running execution with a new candle."""
    query = select(executions.c.id, executions.c.mode, executions.c.timeframe, executions.c.last_candle_ms,
                   executions.c.state["pending_tick"].as_string().label("pending")
                   ).where(executions.c.status == "running")
    if paper_only:
        query = query.where(executions.c.mode == "paper")
    messages = []
    for row in conn.execute(query.order_by(executions.c.id)):
        closed = last_closed_open(now_ms, timeframe_ms(row.timeframe))
        if row.last_candle_ms is None or closed > row.last_candle_ms or row.pending:
            messages.append({"executionId": row.id, "candleMs": closed, "mode": row.mode})
    return messages
