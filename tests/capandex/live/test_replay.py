"""Ticking a paper execution candle by candle gives the backtest's trades (DESIGN §5, §6)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from capandex.db.schema import orders, positions, tick_records
from capandex.db.session import transaction
from capandex.engine import backtest
from capandex.live.executions import execution_status
from capandex.live.ticks import run_pass
from capandex.marketdata.chunks import SETTLE_MS  # a candle is served (and due) this long after its close
from tests.capandex.engine.factories import HOUR_MS, random_walk, sma_cross_flow
from tests.capandex.live.helpers import at, source_of, start_paper


@pytest.mark.parametrize("risk", [(), (("stop_loss", 1.5), ("take_profit", 3.0)), (("trailing_stop", 2.0),)])
def test_paper_replay_equals_backtest(configure, tmp_path, risk):
    configure(DATABASE_URL=f"sqlite:///{tmp_path / 'replay.db'}")
    _replay(risk, 300)


def test_paper_replay_equals_backtest_on_postgres(configure, postgres_url):
    configure(DATABASE_URL=postgres_url)
    _replay((("stop_loss", 1.5), ("take_profit", 3.0)), 160)


def _replay(risk, n):
    candles = random_walk(n, seed=7)
    flow = sma_cross_flow(5, 15, *risk)
    user, execution = start_paper(flow, candles)
    source = source_of(candles)
    for t in candles.time[:-1]:
        outcomes = run_pass(at(int(t) + HOUR_MS + SETTLE_MS), candles=source)
        assert [o.status for o in outcomes] == ["done"]

    expected = [t for t in backtest(flow, candles).trades if t["exitReason"] != "end_of_data"]
    assert len(expected) >= 3
    with transaction() as conn:
        rows = conn.execute(select(positions).where(positions.c.execution_id == execution,
                                                    positions.c.status == "closed")
                            .order_by(positions.c.entry_time)).all()
        status = execution_status(conn, user_id=user, execution_id=execution)
        n_orders = conn.execute(select(func.count()).select_from(orders)
                                .where(orders.c.execution_id == execution)).scalar()
        n_ticks = conn.execute(select(func.count()).select_from(tick_records)
                               .where(tick_records.c.execution_id == execution)).scalar()
    got = [{"entryTime": r.entry_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "exitTime": r.exit_time.strftime("%Y-%m-%dT%H:%M:%SZ"), "entryPrice": r.entry_price,
            "exitPrice": r.exit_price, "units": r.units, "pnl": r.pnl, "exitReason": r.exit_reason} for r in rows]
    assert [(g["entryTime"], g["exitTime"], g["exitReason"]) for g in got] == \
        [(e["entryTime"], e["exitTime"], e["exitReason"]) for e in expected]
    for g, e in zip(got, expected, strict=True):
        for key in ("entryPrice", "exitPrice", "units", "pnl"):
            assert g[key] == pytest.approx(e[key], rel=1e-12, abs=1e-9)
    assert status["totalTrades"] == len(expected)
    assert status["currentTick"] == len(candles) - 1 == n_ticks
    assert n_orders == 2 * len(expected) + status["openPositions"]


def test_repeated_pass_is_a_no_op(configure, database_url):
    configure(DATABASE_URL=database_url)
    candles = random_walk(120, seed=3)
    _user, execution = start_paper(sma_cross_flow(3, 8), candles)
    source = source_of(candles)
    moment = at(int(candles.time[100]) + HOUR_MS + SETTLE_MS)
    first = run_pass(moment, candles=source)
    assert first[0].status == "done" and first[0].fills > 0  # 100 missed candles caught up at once
    assert run_pass(moment, candles=source) == []  # nothing is due any more
    from capandex.live.worker import process_tick

    again = process_tick(execution, int(candles.time[100]), candles=source)  # a duplicated SQS message
    assert again.status == "duplicate"
    with transaction() as conn:
        assert conn.execute(select(func.count()).select_from(tick_records)
                            .where(tick_records.c.execution_id == execution)).scalar() == 101
