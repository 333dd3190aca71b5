"""The parity report: a paper execution equals its backtest trade for trade; a live one shows what
the exchange really did (slippage, fees, missing and extra trades)."""

from __future__ import annotations

import uuid

import pytest

from capandex.db.session import transaction
from capandex.live.executions import execution_status, start_execution
from capandex.live.orders import LiveGateway
from capandex.live.parity import report
from capandex.live.ticks import run_pass
from capandex.live.worker import process_tick
from capandex.marketdata.chunks import SETTLE_MS
from tests.capandex.engine.factories import HOUR_MS, price_rule_flow, random_walk, sma_cross_flow
from tests.capandex.live.helpers import add_key, at, make_flow, source_of
from tests.utils.fixtures import open_venue

CANDLES = random_walk(200, seed=21)


@pytest.mark.parametrize("risk", [(("stop_loss", 1.5), ("take_profit", 3.0)), (("trailing_stop", 2.0),)])
def test_a_paper_execution_shows_zero_difference(configure, tmp_path, risk):
    """Started at candle 60 (the first ticks read the 40-odd candles before it as history), replayed to
    the end: every backtest trade is there, at the same prices, fees and pnl."""
    configure(DATABASE_URL=f"sqlite:///{tmp_path / 'parity.db'}")
    user = uuid.uuid4()
    with transaction() as conn:
        flow_id = make_flow(conn, user, sma_cross_flow(5, 15, *risk))
        execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="paper",
                                    now_ms=int(CANDLES.time[60]))["executionId"]
    source = source_of(CANDLES)
    assert [o.status for o in run_pass(at(int(CANDLES.time[-1]) + HOUR_MS + SETTLE_MS), candles=source)] == ["done"]
    out = report(user_id=user, execution_id=execution, candles=source)
    summary = out["summary"]
    assert summary["matched"] >= 4 and (summary["missing"], summary["extra"]) == (0, 0)
    assert out["from"] == at(int(CANDLES.time[60])).strftime("%Y-%m-%dT%H:%M:%SZ")  # the first candle it processed
    for trade in out["trades"]:
        b, r = trade["backtest"], trade["real"]
        assert (b["entryTime"], b["exitTime"], b["exitReason"]) == (r["entryTime"], r["exitTime"], r["exitReason"])
        for key in ("entryPrice", "exitPrice", "units", "fees", "pnl"):
            assert r[key] == pytest.approx(b[key], rel=1e-9, abs=1e-9), key
        assert trade["entrySlippage"] == pytest.approx(0.0, abs=1e-12)
    assert summary["trackingError"] == pytest.approx(0.0, abs=1e-9)
    assert summary["realPnl"] == pytest.approx(summary["backtestPnl"], abs=1e-9)
    with transaction() as conn:
        assert execution_status(conn, user_id=user, execution_id=execution)["parity"] == summary


def test_a_live_execution_shows_its_slippage_and_a_refused_order(configure, postgres_url, entry_clock):
    configure(DATABASE_URL=postgres_url)
    with open_venue("binance", configure) as venue:
        user = uuid.uuid4()
        with transaction() as conn:
            key_id = add_key(conn, user)
            flow_id = make_flow(conn, user, price_rule_flow(0.0, 1e9))  # buys when flat, sells when long
            execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="live", exchange_key_id=key_id,
                                        now_ms=int(CANDLES.time[40]))["executionId"]
        client = venue.client()
        source = source_of(CANDLES)
        for i in range(40, 46):
            venue.book.prices["BTC/USDT"] = float(CANDLES.close[i]) * 1.002  # the market a little above the close
            if i == 44:
                venue.book.fail_next("insufficient_balance")
            entry_clock.at_settle(int(CANDLES.time[i]))
            process_tick(execution, int(CANDLES.time[i]), candles=source,
                         gateway=lambda row: LiveGateway(client, row.symbol, 0.001, lookup_pause=0.01))
        out = report(user_id=user, execution_id=execution, candles=source)
    first = out["trades"][0]
    assert (first["status"], first["signalCandle"]) == ("matched", at(int(CANDLES.time[40])).strftime(
        "%Y-%m-%dT%H:%M:%SZ"))
    backtest_entry = float(CANDLES.open[41]) * 1.001  # next open + the flow's slippage
    assert first["backtest"]["entryPrice"] == pytest.approx(backtest_entry)
    assert first["real"]["entryPrice"] == pytest.approx(float(CANDLES.close[40]) * 1.002)
    assert first["entrySlippage"] == pytest.approx(float(CANDLES.close[40]) * 1.002 / backtest_entry - 1.0)
    statuses = [(t["signalCandle"], t["status"]) for t in out["trades"]]
    refused = at(int(CANDLES.time[44])).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (refused, "missing") in statuses  # the buy the exchange refused, and why
    assert [t["reason"] for t in out["trades"] if t["signalCandle"] == refused] == ["rejected"]
    summary = out["summary"]
    assert summary["missing"] >= 1 and summary["trackingError"] > 0
    assert summary["trackingErrorPercent"] == pytest.approx(summary["trackingError"] / 10_000 * 100)


def test_a_report_over_more_work_than_a_request_may_do_is_a_422_before_any_candle_loads(configure, tmp_path):
    """249 rsi(14) run live or on paper (a window of 389 candles per tick is cheap), but a year of 1m
    candles later their parity backtest is 498 nodes × 525,600 candles: ~1.2 GB and ~16 s of CPU in
    the 2 GB, 20 s engine function, on every GET."""
    from sqlalchemy import update

    from capandex.db.schema import executions
    from capandex.errors import ValidationFailed
    from tests.capandex.engine.test_cost import indicator_flow

    configure(DATABASE_URL=f"sqlite:///{tmp_path / 'parity.db'}")
    user = uuid.uuid4()
    with transaction() as conn:
        flow_id = make_flow(conn, user, indicator_flow(*[("rsi", {"period": 14})] * 249))
        execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="paper",
                                    now_ms=int(CANDLES.time[60]))["executionId"]
    source = source_of(CANDLES)
    assert [o.status for o in run_pass(at(int(CANDLES.time[61]) + HOUR_MS + SETTLE_MS), candles=source)] == ["done"]
    with transaction() as conn:  # a year of minutes later
        conn.execute(update(executions).where(executions.c.id == execution)
                     .values(last_candle_ms=int(CANDLES.time[60]) + 525_600 * 60_000, timeframe="1m"))
    loaded = len(source.calls)
    with pytest.raises(ValidationFailed) as info:
        report(user_id=user, execution_id=execution, candles=source)
    assert {d["field"] for d in info.value.details} == {"executionId"}
    assert "498 computing nodes" in info.value.details[0]["message"]
    assert len(source.calls) == loaded  # refused before the candles were read
