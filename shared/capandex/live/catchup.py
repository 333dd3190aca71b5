"""Catching up: which closed candles a tick processes, and what it says when the execution is behind.

**No candle is lost.** A tick for candle ``c`` processes every closed candle after the execution's
last processed one up to ``c``, oldest first (:func:`plan`) — in live mode each through its own
intend → act → record, so every candle's signals are evaluated and every candle's range is checked
against the open position's stop-loss, take-profit and trailing levels. A level crossed inside a
candle that is processed late (a newer candle had already settled when it was processed) exits
by the next market order, at the price the exchange fills it at, and the trade carries a note
saying so (:func:`late_exit_note`). A *buy* decided on a late candle is not placed once its signal
is stale (:mod:`.entries`): exits protect, entries would speculate. Paper executions fill at the
stepper's prices, as the backtest does, whenever the candle is processed.

**The bound.** One tick processes at most ``CAPANDEX_LIVE_MAX_CATCHUP`` candles (500 by default):
a tick must finish inside the worker's 60 s, and a live candle may cost several exchange round
trips. What is left waits for the next tick — the scheduler sends one every minute while the
execution has unprocessed candles — so an execution is never advanced past a candle it has not
processed. An execution more than the bound behind is flagged and its user notified once
(``engine_error``, without counting as a failure), and again when it has caught up
(:func:`record_lag`); ``lagCandles`` in its status is the number of settled candles it has not
processed yet (:func:`lag_candles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from capandex.live.running import flow_name
from capandex.notifications import notify
from capandex.timeutil import from_ms, now_ms

__all__ = ["CatchUp", "bound", "is_late", "lag_candles", "late_exit_note", "plan", "record_lag"]

if TYPE_CHECKING:
    from sqlalchemy import Connection


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The candles (open times, epoch ms) one tick processes: ``first_ms`` through ``last_ms``;
    ``left`` candle slots after ``last_ms`` up to the tick's candle wait for the next tick."""

    first_ms: int
    last_ms: int
    left: int


def bound() -> int:
    """The most candles one tick processes (``CAPANDEX_LIVE_MAX_CATCHUP``)."""
    from capandex.config import get_settings

    return get_settings().live_max_catchup_candles


def plan(last_candle_ms: int | None, candle_ms: int, tf_ms: int) -> CatchUp | None:
    """The candles a tick for ``candle_ms`` processes after ``last_candle_ms`` (the last one
    processed; None: only ``candle_ms``), at most :func:`bound` of them, oldest first; None when
    ``candle_ms`` was processed already."""
    first = candle_ms if last_candle_ms is None else last_candle_ms + tf_ms
    if first > candle_ms:
        return None
    last = min(candle_ms, first + (bound() - 1) * tf_ms)
    return CatchUp(first, last, (candle_ms - last) // tf_ms)


def lag_candles(row: Any, at_ms: int | None = None) -> int:
    """Settled candles the execution has not processed yet: counted on the clock for a running
    execution driven by it, else as its last tick left it (a replay, a stopped execution)."""
    from capandex.live.scheduler import last_settled_open
    from capandex.marketdata.chunks import timeframe_ms

    state = row.state or {}
    if row.status != "running" or state.get("replay") or row.last_candle_ms is None:
        return int(state.get("lagCandles", 0))
    tf = timeframe_ms(row.timeframe)
    newest = last_settled_open(now_ms() if at_ms is None else at_ms, tf)
    return max(0, (newest - int(row.last_candle_ms)) // tf)


def record_lag(conn: Connection, row: Any, left: int) -> dict[str, Any]:
    """The ``executions.state`` keys that say how far behind the execution is after a tick left
    ``left`` candles for later: ``lagCandles``, and ``behind`` while more than one tick's worth
    waited (the user is notified when that starts and when it ends)."""
    state = row.state or {}
    was_behind, behind = bool(state.get("behind")), left > 0
    if behind != was_behind:
        name = flow_name(conn, row)
        title, message = (
            (f"{name}: behind the market",
             f"{name} has {left} more closed {row.timeframe} candles to process than one tick handles "
             f"({bound()}). It processes them in order, {bound()} per tick, stops and signals included; "
             f"no candle is skipped.") if behind else
            (f"{name}: caught up", f"{name} has processed every closed {row.timeframe} candle again."))
        notify(conn, user_id=row.user_id, event="engine_error", title=title, message=message,
               action_url=f"/flows/{row.flow_id}")
    return {"lagCandles": left, "behind": behind}


def late_exit_note(reason: str, price: float, candle_ms: int, at_ms: int | None = None) -> str:
    """The note of a trade closed because a level was crossed inside a candle processed late (at
    ``at_ms``, default now)."""
    at_ms = now_ms() if at_ms is None else at_ms
    return (f"{reason.replace('_', ' ')} level {price:.8g} crossed inside the {from_ms(candle_ms):%Y-%m-%d %H:%M} "
            f"candle, which was processed late ({from_ms(at_ms):%H:%M:%S} UTC, catching up): sold by the next "
            "market order at the exchange's price")


def is_late(candle_ms: int, tf_ms: int, at_ms: int | None = None) -> bool:
    """Whether a newer candle had settled already when ``candle_ms`` is processed at ``at_ms``."""
    from capandex.live.scheduler import last_settled_open

    return candle_ms < last_settled_open(now_ms() if at_ms is None else at_ms, tf_ms)
