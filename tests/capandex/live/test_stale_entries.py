"""A live buy is placed only while its signal is fresh; exits always are (capandex.live.entries).

Issue 12's scenario (a 1m SMA 2/3 cross with a 2 % stop-loss, live on the loopback Binance through
the real ccxt client): after an outage the catch-up walks through candles whose signals are minutes
old. The buy of a stale candle is not placed — the execution stays flat, the user is told once, the
parity report shows the backtest's trade as missing with the reason — while a fresh signal still
buys and exits are always sent.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from capandex.db.schema import notifications, orders, positions, tick_records
from capandex.db.session import transaction
from capandex.errors import UpstreamUnavailable
from capandex.live import entries
from capandex.live.client_ids import client_order_id
from capandex.live.parity import report
from tests.capandex.live.helpers import source_of
from tests.capandex.live.scenario import CANDLES, MINUTE_MS, A, B, Clock, E
from tests.capandex.live.scenario import tick as _tick

LAST = len(CANDLES) - 1


def _orders(execution):
    with transaction() as conn:
        return [tuple(r) for r in conn.execute(
            select(orders.c.candle_ms, orders.c.side, orders.c.status).where(orders.c.execution_id == execution)
            .order_by(orders.c.candle_ms))]


def _skipped_notes(user):
    with transaction() as conn:
        return conn.execute(select(notifications.c.message).where(
            notifications.c.user_id == user, notifications.c.title.like("%late buy signals not traded"))
        ).scalars().all()


def test_the_deadline_is_the_newest_settled_candle_or_the_one_before_and_at_most_15_minutes(configure):
    configure()
    close = int(CANDLES.time[A]) + MINUTE_MS  # the signal: candle A's close
    # 1m: the pass of the next minute (newest settled candle B) buys; the one after (C) does not
    assert entries.is_fresh(close, MINUTE_MS, at_ms=close + 2 * MINUTE_MS + 59_000)
    assert not entries.is_fresh(close, MINUTE_MS, at_ms=close + 3 * MINUTE_MS)
    # 1h: "the candle before the newest" would be up to two hours; the cap is 15 minutes
    assert entries.deadline_ms(close, 3_600_000) == close + 15 * MINUTE_MS
    configure(CAPANDEX_LIVE_ENTRY_MAX_AGE_CANDLES="0")
    assert entries.deadline_ms(close, MINUTE_MS) == close + 2 * MINUTE_MS  # settle + the newest candle only


def test_a_catch_up_places_no_buy_on_a_stale_signal_but_buys_on_a_fresh_one(binance_live, monkeypatch):
    """Down from candle A to the settle of the last candle: A's cross (five candles old) is not
    bought — so B's dip has nothing to stop — and E's cross (the candle before the newest) is."""
    venue, user, execution, gateway = binance_live
    clock = Clock(monkeypatch)
    clock.now = int(CANDLES.time[LAST]) + 2 * MINUTE_MS  # the newest settled candle is the last one
    outcome = _tick(execution, LAST, gateway, venue.book)
    assert (outcome.status, outcome.fills) == ("done", 1)  # E's buy, nothing else
    e_buy = client_order_id(execution, int(CANDLES.time[E]), "buy")
    assert venue.book.placed == [e_buy]
    assert _orders(execution) == [(int(CANDLES.time[A]), "buy", "stale"), (int(CANDLES.time[E]), "buy", "filled")]
    with transaction() as conn:
        (held,) = conn.execute(select(positions).where(positions.c.execution_id == execution)).all()
        ticks = conn.execute(select(tick_records.c.status).where(tick_records.c.execution_id == execution)
                             ).scalars().all()
    assert held.status == "open" and held.units == pytest.approx(venue.book.orders[e_buy].filled)
    assert ticks == ["done"] * (LAST - A + 1)  # every candle processed, none lost
    (note,) = _skipped_notes(user)
    assert "the 2024-01-01 00:05 1m candle" in note and "processed too late" in note
    assert "at most 1 before it" in note and "15 min" in note
    parity = report(user_id=user, execution_id=execution, candles=source_of(CANDLES))
    statuses = {t["signalCandle"]: (t["status"], t["reason"]) for t in parity["trades"]}
    assert statuses == {"2024-01-01T00:05:00Z": ("missing", "stale_signal"),
                        "2024-01-01T00:09:00Z": ("matched", None)}
    assert parity["summary"]["skippedEntries"] == 1 and parity["summary"]["missing"] == 1


def test_a_buy_resumed_after_its_deadline_is_looked_up_not_placed(binance_live, monkeypatch):
    """A's buy meets a 429; the exchange keeps refusing for two more minutes. When a pass gets
    through, A's signal is three candles old: the buy is looked up (the exchange does not know it) and
    not placed; the candles after it are processed, and the user is told once."""
    venue, user, execution, gateway = binance_live
    clock = Clock(monkeypatch)
    venue.book.fail_next("rate_limited")
    with pytest.raises(UpstreamUnavailable):
        _tick(execution, A, gateway, venue.book)
    clock.advance(3 * MINUTE_MS)
    lookups = venue.server.count("/api/v3/order")
    outcome = _tick(execution, B + 2, gateway, venue.book)
    assert outcome.status == "done" and venue.book.placed == []
    assert venue.server.count("/api/v3/order") == lookups + 1  # the one lookup by its id; no placement
    assert _orders(execution) == [(int(CANDLES.time[A]), "buy", "stale")]
    with transaction() as conn:
        assert conn.execute(select(positions).where(positions.c.execution_id == execution)).all() == []
    assert len(_skipped_notes(user)) == 1
    clock.advance(MINUTE_MS)
    assert _tick(execution, B + 3, gateway, venue.book).status == "done"
    assert len(_skipped_notes(user)) == 1  # told once, not on every tick after


def test_a_live_catch_up_of_candles_without_orders_asks_the_exchange_nothing(binance_live, monkeypatch):
    """Candles that need no order are recorded together, without an intent: no gateway (key
    decryption, exchange client) is made for them and no request is sent."""
    venue, _user, execution, gateway = binance_live
    clock = Clock(monkeypatch)
    clock.now = int(CANDLES.time[LAST]) + 2 * MINUTE_MS
    made = []

    def counting(row):
        made.append(row.id)
        return gateway(row)

    venue.server.requests.clear()
    assert _tick(execution, E - 1, gateway, venue.book, via=counting).status == "done"  # A (stale) to D: quiet
    assert made == [] and venue.server.count() == 0
    with transaction() as conn:
        assert len(conn.execute(select(tick_records).where(tick_records.c.execution_id == execution)).all()) == E - A
