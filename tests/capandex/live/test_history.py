"""The live engine's bounded history (issue 11): a hard cap derived from the flow's warm-up, ranges
sent to the exchange clamped to its first candle (never negative), one evaluation per tick pass."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from capandex.db.schema import positions
from capandex.db.session import transaction
from capandex.engine import backtest, compile_flow
from capandex.errors import ValidationFailed
from capandex.exchanges.client import FIRST_CANDLE_MS
from capandex.live.executions import start_execution
from capandex.live.history import FLOOR, MAX_WINDOW, WARMUPS, history_window
from capandex.live.ticks import run_pass
from capandex.marketdata.chunks import SETTLE_MS
from tests.capandex.engine.factories import HOUR_MS, random_walk, sma_cross_flow
from tests.capandex.engine.test_cost import indicator_flow
from tests.capandex.live.helpers import at, make_flow, source_of, start_paper


def flow_of(*indicators: tuple[str, dict]) -> dict:
    return {**indicator_flow(*indicators), "settings": {"exchange": "binance", "symbol": "BTC/USDT",
                                                        "timeframe": "1d"}}


def test_short_flows_keep_their_exact_window() -> None:
    compiled = compile_flow(sma_cross_flow(10, 30))
    assert history_window(compiled) == compiled.history < FLOOR
    ema = compile_flow(indicator_flow(("ema", {"period": 200})))  # 200 + 2,763 bars of convergence
    assert history_window(ema) == ema.history


def test_a_long_ema_is_capped_at_five_warm_ups() -> None:
    """ema(100000) asked for 1.48 M candles per tick; it keeps five warm-ups."""
    compiled = compile_flow(indicator_flow(("ema", {"period": 100_000}), ("bollinger", {"period": 2000})))
    assert compiled.history > 1_400_000
    assert history_window(compiled) == min(MAX_WINDOW, WARMUPS * (compiled.warmup + 1)) == MAX_WINDOW


def test_a_warm_up_beyond_the_cap_cannot_run() -> None:
    """sma(100000) of sma(100000) of … six deep: 600,000 candles before the first signal."""
    chained = indicator_flow(("sma", {"period": 100_000}))
    for i in range(1, 6):
        chained["nodes"].append({"id": f"s{i}", "type": "indicator", "data": {"kind": "sma", "period": 100_000}})
        chained["edges"].append({"id": f"x{i}", "source": "i0" if i == 1 else f"s{i - 1}", "target": f"s{i}",
                                 "targetHandle": "source"})
    next(e for e in chained["edges"] if e["id"] == "a0")["source"] = "s5"
    with pytest.raises(ValidationFailed) as info:
        history_window(compile_flow(chained))
    assert info.value.details == [{"field": "nodes", "message": "the indicators' warm-up exceeds 500,000 candles"}]


def test_the_issues_replay_tick_is_bounded_and_never_asks_before_the_first_candle(configure, postgres_url,
                                                                                   binance_env) -> None:
    """The reproduction: ema(100000) and bollinger(2000), replayed from 24 h back, fetched 1.48 M
    candles per step and sent klines requests with a negative startTime. On 1d candles here (the
    look-back reaches 1970 either way): one pass, every request from the exchange's first candle on."""
    configure(DATABASE_URL=postgres_url)
    user = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    with transaction() as conn:
        flow_id = make_flow(conn, user, flow_of(("ema", {"period": 100_000}), ("bollinger", {"period": 2000})),
                            timeframe="1d")
        start_execution(conn, user_id=user, flow_id=flow_id, mode="paper",
                        now_ms=int((now - dt.timedelta(days=3)).timestamp() * 1000))
    outcomes = [o for o in run_pass(now) if o.execution_id]
    assert {o.status for o in outcomes} == {"done"}
    starts = [int(r.query["startTime"]) for r in binance_env.requests if r.path == "/api/v3/klines"]
    assert starts and min(starts) >= FIRST_CANDLE_MS["binance"] > 0


def test_a_long_catch_up_is_one_evaluation_and_still_the_backtest(configure, tmp_path, monkeypatch) -> None:
    """Missed candles are stepped over one evaluation of the window (not one per candle), with the
    backtest's trades."""
    from capandex.engine.compiler import CompiledFlow

    configure(DATABASE_URL=f"sqlite:///{tmp_path / 'catchup.db'}")
    candles, flow = random_walk(300, seed=7), sma_cross_flow(5, 15)
    _user, execution = start_paper(flow, candles)
    evaluations = []
    original = CompiledFlow.signals
    monkeypatch.setattr(CompiledFlow, "signals", lambda self, c: evaluations.append(len(c)) or original(self, c))
    run_pass(at(int(candles.time[-2]) + HOUR_MS + SETTLE_MS), candles=source_of(candles))
    assert len(evaluations) == 1  # 298 candles stepped
    expected = [t for t in backtest(flow, candles).trades if t["exitReason"] != "end_of_data"]
    with transaction() as conn:
        closed = conn.execute(select(func.count()).select_from(positions).where(
            positions.c.execution_id == execution, positions.c.status == "closed")).scalar()
    assert closed == len(expected) >= 3


def test_exchange_ranges_are_clamped_to_the_first_candle(binance_env) -> None:
    from capandex.exchanges import get_client

    client = get_client("binance")
    page = client.ohlcv_page("BTC/USDT", "1d", -86_400_000 * 1000, 5)
    assert len(page) == 5 and page[0][0] >= FIRST_CANDLE_MS["binance"]
    sent = [int(r.query["startTime"]) for r in binance_env.requests if r.path == "/api/v3/klines"]
    assert sent == [FIRST_CANDLE_MS["binance"]]
    assert client.ohlcv_page("BTC/USDT", "1d", 0, 5, until_ms=FIRST_CANDLE_MS["binance"] - 1) == []
    assert binance_env.count("/api/v3/klines") == 1  # nothing to ask for before the exchange existed
    assert get_client("kraken").first_candle_ms > 1_230_940_800_000  # never before 2009 for crypto


def test_a_flow_that_cannot_run_is_a_422_at_start_before_the_exchange_is_asked(api, binance_env) -> None:
    me = api.as_user()
    flow = flow_of(("sma", {"period": 100_000}))
    for i in range(1, 6):  # a warm-up of 600,000 candles (see above)
        flow["nodes"].append({"id": f"s{i}", "type": "indicator", "data": {"kind": "sma", "period": 100_000}})
        flow["edges"].append({"id": f"x{i}", "source": "i0" if i == 1 else f"s{i - 1}", "target": f"s{i}",
                              "targetHandle": "source"})
    next(e for e in flow["edges"] if e["id"] == "a0")["source"] = "s5"
    flow_id = me.post("/api/flows", json={"name": "long", **flow}).json()["id"]
    before = binance_env.count()
    response = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "nodes"
    assert binance_env.count() == before


def chained_emas(count: int, period: int) -> dict:
    """ema of ema of … ``count`` deep: the warm-ups add up."""
    flow = flow_of(("ema", {"period": period}))
    for i in range(1, count):
        flow["nodes"].append({"id": f"e{i}", "type": "indicator", "data": {"kind": "ema", "period": period}})
        flow["edges"].append({"id": f"x{i}", "source": "i0" if i == 1 else f"e{i - 1}", "target": f"e{i}",
                              "targetHandle": "source"})
    next(e for e in flow["edges"] if e["id"] == "a0")["source"] = f"e{count - 1}"
    return flow


def test_chained_warm_ups_cannot_ask_for_more_than_the_cap() -> None:
    """498 chained ema(1000): a warm-up of 497,502 candles (under the cap) asked for a window of five
    of them, 2,487,515 candles — 10 GB and 50 s per tick by the cost model."""
    with pytest.raises(ValidationFailed) as info:
        history_window(compile_flow(chained_emas(498, 1000)))
    assert info.value.details == [{"field": "nodes",
                                   "message": "the indicators' warm-ups need a window over 500,000 candles"}]
    assert history_window(compile_flow(chained_emas(10, 1000))) == WARMUPS * (9 * 999 + 999 + 1)  # still runs


def test_many_long_indicators_cannot_run_where_one_can() -> None:
    """249 ema(90000) — each alone runs — took 1.1 GB and 5 s of CPU on every tick (the tick worker
    has 512 MB and ten executions per batch); the nodes × window cost model refuses them."""
    assert history_window(compile_flow(flow_of(("ema", {"period": 90_000})))) == 450_000
    with pytest.raises(ValidationFailed) as info:
        history_window(compile_flow(flow_of(*[("ema", {"period": 90_000})] * 249)))
    (detail,) = info.value.details
    assert detail["field"] == "nodes" and "498 computing nodes" in detail["message"] and "MiB" in detail["message"]
    cheap = compile_flow(flow_of(*[("rsi", {"period": 14})] * 249))
    assert history_window(cheap) == cheap.history  # many short ones run


def test_a_heavy_flow_is_a_422_at_start(api, binance_env) -> None:
    me = api.as_user()
    flow_id = me.post("/api/flows", json={"name": "wide", **flow_of(*[("ema", {"period": 90_000})] * 249)}).json()["id"]
    before = binance_env.count()
    response = me.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper"})
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "nodes"
    assert binance_env.count() == before


def test_a_window_not_in_the_store_is_downloaded_over_several_ticks(configure, postgres_url, binance_env,
                                                                   monkeypatch) -> None:
    """A new 1m execution whose window (15,000 candles: two chunks of the store) nobody has
    downloaded yet: a tick requests no page after FILL_SECONDS (0 here: one page per tick), stores what
    it fetched, ends as not ready — not a failure — and the next one goes on from there, until the
    window is complete and the tick runs. One execution never spends a worker batch's time on its
    download (one chunk per tick was up to 120 requests at OKX's 100 candles a page)."""
    from capandex.db.schema import executions
    from capandex.live import history
    from capandex.live.executions import execution_status

    configure(DATABASE_URL=postgres_url)
    monkeypatch.setattr(history, "FILL_SECONDS", 0.0)
    now = dt.datetime.now(dt.UTC)
    user = uuid.uuid4()
    with transaction() as conn:
        flow = flow_of(("ema", {"period": 3000}))
        flow_id = make_flow(conn, user, {**flow, "settings": {**flow["settings"], "timeframe": "1m"}})
        execution = start_execution(conn, user_id=user, flow_id=flow_id, mode="paper",
                                    now_ms=int((now - dt.timedelta(minutes=3)).timestamp() * 1000))["executionId"]
    assert history_window(compile_flow(flow_of(("ema", {"period": 3000})))) == 15_000
    statuses, pages = [], []
    for _ in range(30):
        before = binance_env.count("/api/v3/klines")
        statuses.append([o.status for o in run_pass(now) if o.execution_id == execution])
        pages.append(binance_env.count("/api/v3/klines") - before)
        if statuses[-1] == ["done"]:
            break
    assert statuses[-1] == ["done"] and set(map(tuple, statuses[:-1])) == {("retry",)}
    assert max(pages) == 1 and sum(pages) >= 15  # 15,000 candles, 1,000 a page: one page per tick
    with transaction() as conn:
        row = conn.execute(select(executions).where(executions.c.id == execution)).one()
        status = execution_status(conn, user_id=user, execution_id=execution)
    assert (row.consecutive_failures, row.error_count, status["status"]) == (0, 0, "running")
