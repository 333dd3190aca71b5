"""A pass that gives up releases the intent it holds; a worker that dies holding it still keeps
every other worker off it until its lease expires.

The scenario of issue 12, with the real ccxt client against the loopback Binance: a 1m SMA 2/3
cross with a 2 % stop-loss. The buy for candle A is refused with a 429 (or a 418 IP ban); the
pass gives up. The next minute's pass completes the buy and checks candle B, which dipped 4 %:
the stop fires. A later cross buys again. Keeping the lease after giving up made every pass of
the next minute answer ``in_progress``, lost candle B and with it the stop.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from capandex.db.schema import notifications, orders, positions
from capandex.db.session import transaction
from capandex.errors import UpstreamUnavailable
from capandex.live.executions import execution_status
from tests.capandex.live.helpers import DiesAfterPlacing
from tests.capandex.live.scenario import CANDLES, MINUTE_MS, A, B, Clock
from tests.capandex.live.scenario import tick as _tick


@pytest.mark.parametrize("fault", ["rate_limited", "ip_banned"])
def test_a_pass_that_gives_up_releases_the_intent_and_no_stop_is_missed(binance_live, monkeypatch, fault):
    venue, user, execution, gateway = binance_live
    clock = Clock(monkeypatch)
    venue.book.fail_next(fault)
    with pytest.raises(UpstreamUnavailable):  # the buy's outcome is unknown: retried by the next pass
        _tick(execution, A, gateway, venue.book)
    assert venue.book.placed == []
    clock.advance(MINUTE_MS)  # the next minute's pass, well inside the 90 s lease
    outcome = _tick(execution, B, gateway, venue.book)
    assert (outcome.status, outcome.fills) == ("done", 2)  # A's buy completed, then B's stop-loss sell
    for i in range(B + 1, len(CANDLES)):
        clock.advance(MINUTE_MS)
        assert _tick(execution, i, gateway, venue.book).status == "done"
    assert [venue.book.orders[c].side for c in venue.book.placed] == ["buy", "sell", "buy"]
    with transaction() as conn:
        rows = conn.execute(select(positions).where(positions.c.execution_id == execution)
                            .order_by(positions.c.entry_time)).all()
        status = execution_status(conn, user_id=user, execution_id=execution)
        errors = conn.execute(select(notifications.c.message).where(notifications.c.user_id == user,
                                                                    notifications.c.event == "engine_error")).all()
        order_rows = conn.execute(select(orders.c.side, orders.c.status).where(orders.c.execution_id == execution)
                                  .order_by(orders.c.created_at)).all()
    assert [(r.status, r.exit_reason) for r in rows] == [("closed", "stop_loss"), ("open", None)]
    assert rows[0].exit_price == pytest.approx(CANDLES.close[B] * 1.0)  # the real fill, not the level
    assert [tuple(r) for r in order_rows] == [("buy", "filled"), ("sell", "filled"), ("buy", "filled")]
    assert len(errors) == 1 and "could not process the candle of" in errors[0].message  # the give-up, told
    assert status["currentTick"] == len(CANDLES) - A and status["errorCount"] == 1
    assert status["status"] == "running" and status["lastError"]


def test_a_lease_held_by_a_dead_worker_keeps_every_other_worker_off(binance_live, monkeypatch):
    """The worker is killed after the exchange accepted the buy: its lease stays until it expires, so
    concurrent deliveries place nothing; after the expiry one delivery records the order it finds."""
    venue, _user, execution, gateway = binance_live
    clock = Clock(monkeypatch)
    with pytest.raises(SystemExit):
        _tick(execution, A, gateway, venue.book, via=lambda row: DiesAfterPlacing(gateway(row)))
    assert len(venue.book.placed) == 1
    for _ in range(3):  # duplicate and next-minute deliveries while the dead worker's lease runs
        clock.advance(20_000)
        assert _tick(execution, A, gateway, venue.book).status == "in_progress"
    assert len(venue.book.placed) == 1
    clock.advance(31_000)  # 91 s after the lease was taken: expired
    outcome = _tick(execution, A, gateway, venue.book)
    assert (outcome.status, outcome.fills) == ("done", 1)
    assert len(venue.book.placed) == 1  # found by its id, not placed again


def test_a_pass_whose_record_fails_releases_the_intent_too(binance_live, monkeypatch):
    """The buy is placed, then recording it fails (the database connection drops). The pass releases
    the intent as any give-up does: the next pass, well inside the 90 s lease, finds the buy by its id
    and records it — one order, no minute and a half of ``in_progress``."""
    from sqlalchemy.exc import OperationalError

    from capandex.live import intents

    venue, _user, execution, gateway = binance_live
    clock = Clock(monkeypatch)
    real = intents.record_pending

    def drops(*args, **kwargs):
        monkeypatch.setattr(intents, "record_pending", real)
        raise OperationalError("UPDATE executions", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(intents, "record_pending", drops)
    with pytest.raises(OperationalError):
        _tick(execution, A, gateway, venue.book)
    assert len(venue.book.placed) == 1
    clock.advance(10_000)  # past the 5 s settle hold, far inside the lease
    outcome = _tick(execution, A, gateway, venue.book)
    assert (outcome.status, outcome.fills) == ("done", 1)
    assert len(venue.book.placed) == 1  # found by its id, not placed again
