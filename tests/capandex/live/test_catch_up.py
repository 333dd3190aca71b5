"""No candle is lost: a tick processes every unprocessed closed candle in order (at most
CAPANDEX_LIVE_MAX_CATCHUP per tick), checks each one's range against the stops, and says when the
execution is behind."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from capandex.db.schema import notifications, positions, tick_records
from capandex.db.session import transaction
from capandex.engine import backtest
from capandex.live import catchup
from capandex.live.executions import execution_status
from capandex.live.ticks import run_pass
from capandex.marketdata.chunks import SETTLE_MS
from tests.capandex.engine.factories import HOUR_MS, random_walk, sma_cross_flow
from tests.capandex.live.helpers import DiesAfterPlacing, at, source_of, start_paper
from tests.capandex.live.scenario import CANDLES, MINUTE_MS, A, B, Clock
from tests.capandex.live.scenario import tick as _tick


def _notes(user, title):
    with transaction() as conn:
        return conn.execute(select(notifications.c.message).where(
            notifications.c.user_id == user, notifications.c.title.like(f"%{title}"))).scalars().all()


def test_candles_skipped_while_a_dead_worker_held_the_lease_are_processed_in_order(binance_live, monkeypatch):
    """The buy of candle A is placed by a worker that dies; the passes for candle B answer
    ``in_progress`` while its lease runs. The pass for candle C completes A, then processes B — whose
    range crossed the stop: sold by the next market order, noted as late — then C."""
    venue, user, execution, gateway = binance_live
    clock = Clock(monkeypatch)
    with pytest.raises(SystemExit):
        _tick(execution, A, gateway, venue.book, via=lambda row: DiesAfterPlacing(gateway(row)))
    clock.advance(MINUTE_MS)
    assert _tick(execution, B, gateway, venue.book).status == "in_progress"  # B's message is consumed
    clock.advance(MINUTE_MS)
    with transaction() as conn:
        assert execution_status(conn, user_id=user, execution_id=execution)["lagCandles"] == 3  # A, B, C
    clock.advance(MINUTE_MS)  # the lease has expired
    outcome = _tick(execution, B + 1, gateway, venue.book)
    assert (outcome.status, outcome.fills) == ("done", 2)
    assert [venue.book.orders[c].side for c in venue.book.placed] == ["buy", "sell"]
    with transaction() as conn:
        (trade,) = conn.execute(select(positions).where(positions.c.execution_id == execution)).all()
        ticks = conn.execute(select(tick_records.c.candle_ms, tick_records.c.status)
                             .where(tick_records.c.execution_id == execution).order_by(tick_records.c.candle_ms)).all()
        status = execution_status(conn, user_id=user, execution_id=execution)
    assert [tuple(t) for t in ticks] == [(int(CANDLES.time[i]), "done") for i in (A, B, B + 1)]
    assert (trade.status, trade.exit_reason) == ("closed", "stop_loss")
    assert trade.exit_price == pytest.approx(CANDLES.close[B + 1])  # what the exchange filled at, not the level
    assert "processed late" in trade.note and "stop loss level" in trade.note
    assert status["lagCandles"] == 1 and status["currentTick"] == 3  # D has settled meanwhile; its tick comes next


def test_a_candle_processed_on_time_carries_no_note(binance_live, monkeypatch):
    venue, _user, execution, gateway = binance_live
    clock = Clock(monkeypatch)
    clock.now = int(CANDLES.time[A]) + MINUTE_MS + SETTLE_MS + 2_000
    assert _tick(execution, A, gateway, venue.book).status == "done"
    clock.advance(MINUTE_MS)
    assert _tick(execution, B, gateway, venue.book).status == "done"
    with transaction() as conn:
        (trade,) = conn.execute(select(positions).where(positions.c.execution_id == execution)).all()
    assert (trade.exit_reason, trade.note) == ("stop_loss", None)


def test_an_execution_further_behind_than_the_bound_catches_up_in_order(configure, tmp_path, monkeypatch):
    """With 4 candles per tick, 40 missed candles take 10 passes: each processes the next 4, the user
    is told once that the execution is behind and once that it caught up, and the trades equal the
    backtest's (no candle skipped)."""
    configure(DATABASE_URL=f"sqlite:///{tmp_path / 'behind.db'}", CAPANDEX_LIVE_MAX_CATCHUP="4")
    candles = random_walk(60, seed=11)
    flow = sma_cross_flow(3, 8, ("stop_loss", 1.0))
    user, execution = start_paper(flow, candles)
    source = source_of(candles)
    moment = at(int(candles.time[-1]) + HOUR_MS + SETTLE_MS)
    monkeypatch.setattr(catchup, "now_ms", lambda: int(moment.timestamp() * 1000))
    lags = []
    for _ in range(20):
        outcomes = run_pass(moment, candles=source)
        if not outcomes:
            break
        assert [o.status for o in outcomes] == ["done"]
        with transaction() as conn:
            lags.append(execution_status(conn, user_id=user, execution_id=execution)["lagCandles"])
    assert lags == [56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0]
    assert len(_notes(user, "behind the market")) == 1 and len(_notes(user, "caught up")) == 1
    with transaction() as conn:
        n_ticks = conn.execute(select(tick_records.c.candle_ms).where(tick_records.c.execution_id == execution)
                               ).scalars().all()
        rows = conn.execute(select(positions).where(positions.c.execution_id == execution,
                                                    positions.c.status == "closed")
                            .order_by(positions.c.entry_time)).all()
    assert sorted(n_ticks) == [int(t) for t in candles.time]  # every candle, once
    expected = [t for t in backtest(flow, candles).trades if t["exitReason"] != "end_of_data"]
    assert len(expected) >= 3
    assert [(r.exit_reason, r.exit_price) for r in rows] == [(e["exitReason"], pytest.approx(e["exitPrice"]))
                                                            for e in expected]
