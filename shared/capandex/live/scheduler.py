"""The scheduler's pass: which running executions have a newly closed candle.

EventBridge invokes it once a minute; it reads every running execution (one indexed query) and
yields one message per execution whose timeframe closed (and the market-data layer settled,
60 s after the close) a candle after the last one it processed. The message names the candle,
so a late or repeated pass produces the very same message and the worker's tick record makes
the repeat a no-op.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, or_, select

from capandex.db.schema import executions
from capandex.live.timeframes import last_closed_open
from capandex.marketdata.chunks import timeframe_ms


def last_settled_open(now_ms: int, tf_ms: int) -> int:
    """Open time of the newest candle the market-data layer serves at ``now_ms``: closed at least
    ``SETTLE_MS`` (60 s) ago. Naming a younger candle would make every first delivery fail as
    "not published yet" and wait for SQS's redelivery (360 s) — for a 1m flow, every tick."""
    from capandex.marketdata.chunks import SETTLE_MS

    return last_closed_open(now_ms - SETTLE_MS, tf_ms)


def due_ticks(conn: Connection, now_ms: int, *, paper_only: bool = False) -> list[dict[str, Any]]:
    """``[{"executionId", "candleMs", "mode"}]`` for every running execution with a new candle, and
    every execution with a pending intent.

    ``paper_only`` is the replay pass (``capandex tick --at``). A replay execution (started with
    ``replayFrom``) ticks only in such passes: a pass on the real clock would jump it to the
    present at once, while its user steps it through the past."""
    pending = executions.c.state["pending_tick"].as_string()
    replay = executions.c.state["replay"].as_boolean()
    # a stopped or failed live execution still gets ticks while an intent it committed is pending:
    # completing that intent is the only way its orders (maybe on the exchange already) get recorded
    query = select(executions.c.id, executions.c.mode, executions.c.timeframe, executions.c.last_candle_ms,
                   pending.label("pending"), replay.label("replay")
                   ).where(or_(executions.c.status == "running", pending.is_not(None)))
    if paper_only:
        query = query.where(executions.c.mode == "paper")
    messages = []
    for row in conn.execute(query.order_by(executions.c.id)):
        if row.replay and not paper_only and not row.pending:
            continue
        closed = last_settled_open(now_ms, timeframe_ms(row.timeframe))
        if row.last_candle_ms is None or closed > row.last_candle_ms or row.pending:
            messages.append({"executionId": row.id, "candleMs": closed, "mode": row.mode})
    return messages
