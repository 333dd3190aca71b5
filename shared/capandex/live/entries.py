"""Stale entries: a live buy is placed only while its signal is fresh; exits always are.

**Why.** A tick processes every missed closed candle in order (:mod:`.catchup`), so after an
outage — Capandex down, the exchange refusing requests, a worker that died holding an intent — a
live execution walks through candles whose signals are minutes or hours old. An *exit* decided on
such a candle is protection: a stop-loss level crossed inside a skipped candle is sold by the next
market order (issue 12). An *entry* is not: opening a position now, at today's price, because of a
signal from an hour ago is a trade the flow never asked for (its backtest bought at that candle's
next open, not an hour later), and up to ``CAPANDEX_LIVE_MAX_CATCHUP`` of them could be sent in one
tick. So, in live mode only:

* a **buy is placed only before** :func:`deadline_ms` of its signal: its signal candle is the
  newest settled candle (:func:`capandex.live.scheduler.last_settled_open`) or at most
  ``CAPANDEX_LIVE_ENTRY_MAX_AGE_CANDLES`` (default 1) before it, **and** its close is at most
  ``CAPANDEX_LIVE_ENTRY_MAX_DELAY_SECONDS`` (default 900) ago. The candle rule bounds short
  timeframes, where one retry a minute later already crosses a candle; the cap bounds long ones,
  where "the candle before the newest" can be a day old. With the defaults a buy may be sent up to
  3 minutes after its candle closed at 1m, 11 minutes at 5m, and 15 minutes from 15m up. A webhook
  call's buy has the call's time as its signal.
* a buy past its deadline is **not placed**: the execution stays flat (no position, no protective
  stop), the buy's ``orders`` row is written ``stale`` — the parity report lists the backtest's
  trade as ``missing`` with the reason — and the user is told once per tick which signals were
  skipped and why (:func:`notify_skipped`). A level-type condition that is still true on a fresh
  candle buys then, at the price of that fresh signal.
* it is checked **twice**: when the candle is stepped (a catch-up decides no buy for a stale
  candle and so costs no request for it) and again right before the order is sent
  (:func:`capandex.live.intents.complete_pending`), because an intent committed in time can be
  resumed late (the exchange refused requests for an hour). A stale buy of a resumed intent is only
  looked up by its client id: found, it was placed before it went stale and is recorded as any fill;
  unknown, it is not placed.
* exits (signals, stop-loss, take-profit, trailing stop, kill switch, webhook sells), protective
  stop orders and paper executions are unaffected: paper fills at the stepper's prices whenever a
  candle is processed, so a paper replay still equals the backtest trade for trade.

**Why one candle of grace** (the default ``1``): issue 12's scenario — a 1m flow whose buy for the
14:49 candle got a 429 — must still buy. That candle closes at 14:50 and settles at 14:51; the
next minute's pass, at 14:52, resumes the intent the failed pass released and sends the buy while
the newest settled candle is 14:50, one after the signal's: a retry one pass later is the protocol
working, not a stale signal. Its deadline is 14:53:00 (60 s settle + two
candles after the close). (Before the lease was released on give-up, the issue saw that buy reach the
exchange at 14:53:03: with this rule it would not have been placed.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from capandex.live.running import flow_name
from capandex.notifications import notify
from capandex.timeutil import from_ms, now_ms  # tests move the clock by patching this module's now_ms

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["deadline_ms", "is_fresh", "noted", "notify_skipped"]

#: ``executions.state`` key of the buys skipped as stale since the user was last told
SKIPPED_KEY = "skippedEntries"


def deadline_ms(signal_ms: int, tf_ms: int) -> int:
    """The moment (epoch ms, exclusive) after which a buy whose signal came at ``signal_ms`` (its
    candle's close, or a webhook call's time) is not placed any more, on a ``tf_ms`` timeframe."""
    from capandex.config import get_settings
    from capandex.marketdata.chunks import SETTLE_MS

    settings = get_settings()
    by_candles = SETTLE_MS + (settings.live_entry_max_age_candles + 1) * tf_ms
    return signal_ms + min(by_candles, settings.live_entry_max_delay_seconds * 1000)


def is_fresh(signal_ms: int, tf_ms: int, at_ms: int | None = None) -> bool:
    """Whether a buy whose signal came at ``signal_ms`` may still be placed at ``at_ms`` (default now)."""
    return (now_ms() if at_ms is None else at_ms) < deadline_ms(signal_ms, tf_ms)


def noted(state: dict[str, Any], candle_ms: int) -> dict[str, Any]:
    """``state`` (an ``executions.state``) also counting the buy of ``candle_ms`` skipped as stale
    (bounded: a count and the first and last candle, however many were skipped)."""
    seen = state.get(SKIPPED_KEY) or {}
    first = min(int(seen.get("first", candle_ms)), candle_ms)
    last = max(int(seen.get("last", candle_ms)), candle_ms)
    return {**state, SKIPPED_KEY: {"count": int(seen.get("count", 0)) + 1, "first": first, "last": last}}


def notify_skipped(conn: Connection, row: Any, state: dict[str, Any]) -> dict[str, Any]:
    """Tell the user, once, about the buys skipped as stale since the last time (``state``'s
    count); ``state`` without that count."""
    from capandex.config import get_settings

    seen = state.get(SKIPPED_KEY)
    if not seen:
        return state
    settings = get_settings()
    name, count = flow_name(conn, row), int(seen["count"])
    first, last = from_ms(int(seen["first"])), from_ms(int(seen["last"]))
    when = f"the {first:%Y-%m-%d %H:%M} {row.timeframe} candle" if count == 1 else (
        f"{count} {row.timeframe} candles from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}")
    notify(conn, user_id=row.user_id, event="engine_error", title=f"{name}: late buy signals not traded",
           message=f"{name} did not buy on the signal of {when} UTC: it was processed too late (catching up after "
                   f"an outage or a refused request). A live buy is placed only while its signal candle is the newest "
                   f"settled one or at most {settings.live_entry_max_age_candles} before it, and at most "
                   f"{settings.live_entry_max_delay_seconds // 60} min after its close, so that no position is opened "
                   f"at today's price on an old signal. The flow stays flat until its next fresh buy signal; exits and "
                   f"stops are not affected.", action_url=f"/flows/{row.flow_id}")
    return {k: v for k, v in state.items() if k != SKIPPED_KEY}
