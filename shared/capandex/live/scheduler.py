"""The scheduler's pass: which running executions have a newly closed candle.

EventBridge invokes it once a minute; it reads every running execution (one indexed query) and
yields one message per execution whose timeframe closed (and the market-data layer settled,
60 s after the close) a candle after the last one it processed. The message names the candle,
so a late or repeated pass produces the very same message and the worker's tick record makes
the repeat a no-op.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, or_, select

from capandex.db.schema import executions
from capandex.live.timeframes import last_closed_open
from capandex.marketdata.chunks import timeframe_ms

if TYPE_CHECKING:
    from capandex.exchanges.limits import KeyLimit

#: requests a live tick makes on its key, about (a lookup, the balance, an order, its stop)
REQUESTS_PER_TICK = 4
#: the most a tick is delayed into its minute (seconds): it starts well before the next pass
MAX_SPREAD_S = 45


def last_settled_open(now_ms: int, tf_ms: int) -> int:
    """Open time of the newest candle the market-data layer serves at ``now_ms``: closed at least
    ``SETTLE_MS`` (60 s) ago. Naming a younger candle would make every first delivery fail as
    "not published yet" and wait for SQS's redelivery (360 s) — for a 1m flow, every tick."""
    from capandex.marketdata.chunks import SETTLE_MS

    return last_closed_open(now_ms - SETTLE_MS, tf_ms)


def due_ticks(conn: Connection, now_ms: int, *, paper_only: bool = False) -> list[dict[str, Any]]:
    """``[{"executionId", "candleMs", "mode", "exchange", "keyId"}]`` for every running execution with
    a new candle, and every execution with a pending intent (``keyId``: a live execution's exchange
    key, None for paper).

    ``paper_only`` is the replay pass (``capandex tick --at``). A replay execution (started with
    ``replayFrom``) ticks only in such passes: a pass on the real clock would jump it to the
    present at once, while its user steps it through the past."""
    pending = executions.c.state["pending_tick"].as_string()
    replay = executions.c.state["replay"].as_boolean()
    # a stopped or failed live execution still gets ticks while an intent it committed is pending:
    # completing that intent is the only way its orders (maybe on the exchange already) get recorded
    query = select(executions.c.id, executions.c.mode, executions.c.timeframe, executions.c.last_candle_ms,
                   executions.c.exchange, executions.c.exchange_key_id, pending.label("pending"),
                   replay.label("replay")
                   ).where(or_(executions.c.status == "running", pending.is_not(None)))
    if paper_only:
        query = query.where(executions.c.mode == "paper")
    messages = []
    for row in conn.execute(query.order_by(executions.c.id)):
        if row.replay and not paper_only and not row.pending:
            continue
        closed = last_settled_open(now_ms, timeframe_ms(row.timeframe))
        if row.last_candle_ms is None or closed > row.last_candle_ms or row.pending:
            messages.append({"executionId": row.id, "candleMs": closed, "mode": row.mode, "exchange": row.exchange,
                             "keyId": row.exchange_key_id if row.mode == "live" else None})
    return messages


def spread(messages: list[dict[str, Any]], limit_of: Callable[[str], KeyLimit]) -> list[int]:
    """``DelaySeconds`` per message (of :func:`due_ticks`): the live ticks due in the same pass on
    one exchange key are spread over the minute — the first ones the key's burst absorbs start at
    once, each next one :data:`REQUESTS_PER_TICK` / (the key's requests per second) later, at most
    :data:`MAX_SPREAD_S` — so they arrive as the key's budget (:mod:`capandex.live.budget`) can
    serve them instead of queueing inside the workers. ``limit_of`` maps an exchange id to its
    :class:`~capandex.exchanges.limits.KeyLimit`."""
    seen: Counter[str] = Counter()
    delays = []
    for message in messages:
        key = message.get("keyId")
        if not key:
            delays.append(0)
            continue
        limit, index = limit_of(message["exchange"]), seen[key]
        seen[key] += 1
        at_once = limit.burst // REQUESTS_PER_TICK
        later = math.ceil((index - at_once + 1) * REQUESTS_PER_TICK / limit.per_second) if index >= at_once else 0
        delays.append(min(MAX_SPREAD_S, later))
    return delays
