"""DESIGN.md §4/§5 on hand-built candles, expected values worked out by hand from the formulas.

Every expected number below is written out with the DESIGN formula it comes from (never by
calling an engine helper); :func:`run` also checks that the bar-by-bar stepper agrees exactly with
the vectorised backtest, so each example pins both implementations.
"""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from capandex.engine import backtest, compile_flow, resolve_settings, run_stepper
from capandex.errors import ValidationFailed
from tests.capandex.engine.factories import HOUR_MS, START_MS, bars, price_rule_flow

DAY_MS = 24 * HOUR_MS
CAPITAL = 10_000.0
FLAT = (100.0, 100.5, 99.5, 100.0)  # open, high, low, close
approx = pytest.approx


def run(flow: dict, rows, *, step_ms: int = HOUR_MS, fee: float = 0.0, slippage: float = 0.0, **kwargs):
    """Backtest ``rows`` (open, high, low, close) and check the stepper gives the very same run."""
    candles = bars(rows, step_ms) if isinstance(rows, list) else rows
    result = backtest(flow, candles, fee=fee, slippage=slippage, **kwargs)
    compiled = compile_flow(flow)
    settings = resolve_settings(compiled.flow, kwargs.get("capital", CAPITAL), fee, slippage)
    trades, equity = run_stepper(compiled, candles, settings)
    assert [t.to_dict() for t in trades] == result.trades
    assert equity == result.equity.tolist()
    return result


def iso(bar: int, step_ms: int = HOUR_MS) -> str:
    """The ISO time of bar ``bar`` of :func:`bars` (hourly from 2024-01-01T00:00:00Z)."""
    return np.datetime_as_string(np.datetime64(START_MS + bar * step_ms, "ms"), unit="s") + "Z"


def walk(closes: list[float]) -> list[tuple[float, float, float, float]]:
    """Bars that open at the previous close (the first at its own close), high/low 0.5 outside."""
    opens = [closes[0], *closes[:-1]]
    return [(o, max(o, c) + 0.5, min(o, c) - 0.5, c) for o, c in zip(opens, closes, strict=True)]


def signal_flow(nodes: list[dict], edges: list[tuple[str, str, str | None]]) -> dict:
    """A flow from nodes and (source, target, targetHandle) edges; a buy action makes it valid."""
    return {"nodes": [*nodes, {"id": "buy", "type": "action", "data": {"action": "buy"}}],
            "edges": [{"id": f"e{i}", "source": s, "target": t, **({"targetHandle": h} if h else {})}
                      for i, (s, t, h) in enumerate(edges)]}


def node_values(flow: dict, rows) -> dict:
    compiled = compile_flow(flow)
    return {key[0]: value for key, value in compiled.evaluate(bars(rows)).items()}


def strict_json(text: str) -> dict:
    """Parse JSON refusing NaN / Infinity (which json.loads would otherwise accept)."""
    def refuse(token: str):
        raise AssertionError(f"non-finite number {token} in JSON")
    return json.loads(text, parse_constant=refuse)


# -- fills ----------------------------------------------------------------------------------------
def test_next_open_fill_with_slippage_and_fee_on_both_sides():
    """§5: buy at close t fills at open t+1 × (1 + slippage); units = equity × size / (fill × (1 + fee));
    a sell fills at open × (1 − slippage); fee = feeRate × notional on each side."""
    rows = [(100, 101, 99, 100), (102, 103, 97.5, 98), (97, 99, 96, 99), (99.5, 101, 99, 100.5)]
    fee, slip = 0.001, 0.002
    result = run(price_rule_flow(99.5, 98.5), rows, fee=fee, slippage=slip)  # buy close>99.5, sell close<98.5
    entry = 102 * (1 + slip)                       # open of bar 1, after the buy signal at close 0
    units = CAPITAL * 100 / 100 / (entry * (1 + fee))
    exit_ = 97 * (1 - slip)                        # open of bar 2, after the sell signal at close 1
    proceeds = units * exit_ - fee * units * exit_
    (trade,) = result.trades                       # the buy signal at the last close (100.5) never fills
    assert trade["entryTime"] == iso(1) and trade["exitTime"] == iso(2)
    assert trade["entryPrice"] == approx(entry, rel=1e-15)
    assert trade["exitPrice"] == approx(exit_, rel=1e-15)
    assert trade["units"] == approx(units, rel=1e-12)
    assert trade["fees"] == approx(fee * units * entry + fee * units * exit_, rel=1e-12)
    assert trade["pnl"] == approx(proceeds - CAPITAL, rel=1e-12)
    assert trade["exitReason"] == "signal"
    cash_after_entry = CAPITAL - units * entry * (1 + fee)
    assert cash_after_entry == approx(0.0, abs=1e-9)
    assert result.equity.tolist() == approx([CAPITAL, cash_after_entry + units * 98, proceeds, proceeds],
                                            rel=1e-12)


def test_signal_on_the_last_candle_does_not_fill():
    """§5: a signal on the last candle does not fill (no trade, equity stays the capital)."""
    result = run(price_rule_flow(105), [FLAT, FLAT, FLAT, (100, 106.5, 100, 106)])
    assert result.trades == []
    assert result.equity.tolist() == [CAPITAL] * 4


def test_sell_signal_while_flat_and_buy_signal_while_long_are_ignored():
    """§5: a sell only acts when long and a buy only when flat (a second buy does not re-size)."""
    rows = [(99, 99.5, 98.5, 99), (99, 99.5, 98.5, 99),      # sell signals while flat: ignored
            (99, 102.5, 98.5, 102),                          # buy signal (close 102 > 101)
            (102.5, 103.5, 102, 103),                        # entry at 102.5; buy again: ignored
            (103, 103, 97.5, 98),                            # sell signal (98 < 99.5)
            (97, 98, 96.5, 97.5)]                            # exit at 97; sell while flat again
    result = run(price_rule_flow(101, 99.5), rows)
    units = CAPITAL / 102.5
    (trade,) = result.trades
    assert (trade["entryPrice"], trade["exitPrice"], trade["units"]) == (102.5, 97.0, approx(units))
    assert result.equity.tolist() == approx([CAPITAL, CAPITAL, CAPITAL, units * 103, units * 98, units * 97],
                                            rel=1e-12)


# -- stops ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("bar2", "expected_fill"), [
    ((99, 99.5, 94, 95), 101 * (1 - 5 / 100)),      # open above the level: fills at the level
    ((90, 91, 88, 91), 90.0),                       # gapped below it: fills at the open
], ids=["at_level", "gap_below"])
def test_stop_loss_fills_at_the_level_or_the_gapped_open_with_slippage(bar2, expected_fill):
    """§5: stop-loss level = entry × (1 − p/100); fill = level, or the open if already below it;
    stop-market, so × (1 − slippage), and the fee is charged."""
    fee, slip = 0.001, 0.01
    result = run(price_rule_flow(99, None, ("stop_loss", 5)), [FLAT, FLAT, bar2, (95, 95, 95, 95)],
                 fee=fee, slippage=slip)
    entry = 100 * (1 + slip)                        # = 101
    units = CAPITAL / (entry * (1 + fee))
    (trade,) = result.trades
    assert (trade["exitReason"], trade["exitTime"]) == ("stop_loss", iso(2))
    assert trade["exitPrice"] == approx(expected_fill * (1 - slip), rel=1e-12)
    assert trade["pnl"] == approx(units * expected_fill * (1 - slip) * (1 - fee) - CAPITAL, rel=1e-12)


@pytest.mark.parametrize(("bar2", "expected_fill"), [
    ((102, 107, 98, 98.5), 101 * (1 + 5 / 100)),    # high crosses the level: fills at the level
    ((110, 112, 98, 98.5), 110.0),                  # gapped above it: fills at the open
], ids=["at_level", "gap_above"])
def test_take_profit_is_a_limit_without_slippage(bar2, expected_fill):
    """§5: take-profit level = entry × (1 + p/100); a limit exit: the level, or the open if already
    above it, with no slippage (the fee still applies)."""
    fee, slip = 0.001, 0.01
    result = run(price_rule_flow(99, None, ("take_profit", 5)), [FLAT, FLAT, bar2, (98.5, 99, 98, 98.5)],
                 fee=fee, slippage=slip)
    units = CAPITAL / (101 * (1 + fee))
    (trade,) = result.trades
    assert (trade["exitReason"], trade["exitTime"]) == ("take_profit", iso(2))
    assert trade["exitPrice"] == approx(expected_fill, rel=1e-12)
    assert trade["pnl"] == approx(units * expected_fill * (1 - fee) - CAPITAL, rel=1e-12)


def test_stop_wins_over_take_profit_in_the_same_bar():
    """§5: when both a stop and the take-profit could trigger in one bar, the stop wins."""
    slip = 0.01
    result = run(price_rule_flow(99, None, ("stop_loss", 5), ("take_profit", 5)),
                 [FLAT, FLAT, (100, 107, 95, 96), (96, 96, 96, 96)], slippage=slip)
    trade = result.trades[0]
    assert (trade["exitReason"], trade["exitTime"]) == ("stop_loss", iso(2))
    assert trade["exitPrice"] == approx(101 * 0.95 * (1 - slip), rel=1e-12)


def test_a_bar_opening_above_the_take_profit_fills_it_at_the_open():
    """A bar that opens at or above the take-profit filled the limit at the open, before its low
    could reach the stop: the order is known, so the stop-first rule does not apply."""
    result = run(price_rule_flow(99, None, ("stop_loss", 5), ("take_profit", 5)),
                 [FLAT, FLAT, (110, 112, 95, 96), (96, 96, 96, 96)], slippage=0.01)
    trade = result.trades[0]
    assert (trade["exitReason"], trade["exitTime"]) == ("take_profit", iso(2))
    assert trade["exitPrice"] == approx(110, rel=1e-12)


@pytest.mark.parametrize(("risk", "bar1", "reason", "level"), [
    (("stop_loss", 5), (100, 100.5, 94, 95), "stop_loss", 100 * 0.95),
    (("take_profit", 5), (100, 107, 98, 98.5), "take_profit", 100 * 1.05),
    (("trailing_stop", 10), (100, 101, 89, 90), "trailing_stop", 100 * 0.90),
], ids=["stop_loss", "take_profit", "trailing_stop"])
def test_stops_are_checked_from_the_entry_bar_on(risk, bar1, reason, level):
    """§5: stops are checked inside every bar from the entry bar on: the entry bar's own low/high
    can close the trade in the bar it opened."""
    result = run(price_rule_flow(99, None, risk), [FLAT, bar1, (98, 98.5, 97.5, 98)])
    (trade,) = result.trades
    assert (trade["entryTime"], trade["exitTime"], trade["exitReason"]) == (iso(1), iso(1), reason)
    assert trade["exitPrice"] == approx(level, rel=1e-12)


def test_a_low_exactly_at_the_stop_level_reaches_it():
    """§5: the stop fires when the bar's low reaches the level, a touch included: entry 51, stop 5 %
    → level 51 × 0.95 = 48.45, and a low of exactly 48.45 stops the trade there."""
    result = run(price_rule_flow(50, None, ("stop_loss", 5)),
                 [(51, 51.5, 50.5, 51), (51, 51.5, 50.5, 51), (51, 51.5, 48.45, 49), (49, 49.5, 48.5, 49)])
    (trade,) = result.trades
    assert (trade["exitReason"], trade["exitTime"]) == ("stop_loss", iso(2))
    assert trade["exitPrice"] == approx(48.45, rel=1e-12)


@pytest.mark.parametrize(("bars_after_entry", "exit_bar", "level"), [
    # entry bar: level = entry × 0.9 = 90.09 (not 120 × 0.9 = 108, although its own high is 120),
    # so its low of 91 survives; bar 2: max(100.1, 120) × 0.9 = 108 ≥ low 98 → out at 108
    ([(100, 120, 91, 115), (115, 116, 98, 98.5)], 2, max(100.1, 120) * 0.9),
    # same, but bar 2 opens at 100, already under 108: fills at the open
    ([(100, 120, 91, 115), (100, 101, 98, 98.5)], 2, 100.0),
    # highs stay under the entry price (100.05 < 100.1): the level is entry × 0.9 = 90.09, which a
    # low of 90.07 reaches (with only the highest high it would be 100.05 × 0.9 = 90.045)
    ([(100, 100.05, 99, 99.5), (99.5, 100.05, 90.07, 91)], 2, max(100.1, 100.05) * 0.9),
], ids=["highest_high_before_the_bar", "gap_below_the_trail", "entry_price_floor"])
def test_trailing_stop_level_uses_entry_and_highs_before_the_bar(bars_after_entry, exit_bar, level):
    """§5: trailing level at bar k = max(entry price, highest high of bars entry..k−1) × (1 − p/100);
    a stop-market exit (× (1 − slippage))."""
    slip = 0.001                                      # entry = 100 × 1.001 = 100.1
    rows = [FLAT, *bars_after_entry, (98.5, 99, 98, 98.5)]
    result = run(price_rule_flow(99, None, ("trailing_stop", 10)), rows, slippage=slip)
    (trade,) = result.trades
    assert trade["entryPrice"] == approx(100.1, rel=1e-15)
    assert (trade["exitReason"], trade["exitTime"]) == ("trailing_stop", iso(exit_bar))
    assert trade["exitPrice"] == approx(level * (1 - slip), rel=1e-12)


# -- kill switch ----------------------------------------------------------------------------------
def test_kill_switch_at_exactly_the_percent_from_the_running_peak():
    """§5: at a close, (1 − equity/peak) × 100 ≥ percent → the position closes at the next open
    (reason kill_switch) and nothing is bought afterwards. Peak = running peak of equity (12,000
    here, not the capital); 10,800 is exactly 10 % below it, and ≥ includes equality."""
    rows = [FLAT, (100, 121, 99.5, 120), (120, 120, 107, 108), (109, 110, 108, 109), (109, 111, 108, 110)]
    result = run(price_rule_flow(50, None, ("kill_switch", 10)), rows)  # buy signal at every close
    units = CAPITAL / 100
    assert units * 120 == 12_000 and (1 - units * 108 / 12_000) * 100 == approx(10.0)
    (trade,) = result.trades
    assert (trade["exitReason"], trade["exitTime"], trade["exitPrice"]) == ("kill_switch", iso(3), 109.0)
    assert result.equity.tolist() == approx([CAPITAL, 12_000, 10_800, 10_900, 10_900])
    assert any("kill switch" in w for w in result.warnings)


def test_kill_switch_just_under_the_percent_does_not_fire():
    """§5: a drawdown under the percent (10,801 from 12,000 = 9.99 %) leaves the position open."""
    rows = [FLAT, (100, 121, 99.5, 120), (120, 120, 107, 108.01), (109, 110, 108, 109)]
    result = run(price_rule_flow(50, None, ("kill_switch", 10)), rows)
    (trade,) = result.trades
    assert trade["exitReason"] == "end_of_data"


def test_kill_switch_while_flat_stops_all_later_entries():
    """§5: the kill switch also fires when flat (here right after a stop-loss): no further entries,
    although the buy condition stays true (without it, the flow re-enters at bar 3)."""
    rows = [FLAT, FLAT, (99, 99.5, 94, 96), (96, 97, 95.5, 96), (96, 97, 95.5, 96)]
    killed = run(price_rule_flow(50, None, ("stop_loss", 5), ("kill_switch", 5)), rows)
    assert [(t["exitReason"], t["exitPrice"]) for t in killed.trades] == [("stop_loss", 95.0)]
    assert (1 - 95 * 100 / CAPITAL) * 100 >= 5                   # 9,500 from 10,000 at close 2
    assert killed.equity.tolist() == approx([CAPITAL, CAPITAL, 9_500, 9_500, 9_500])
    free = run(price_rule_flow(50, None, ("stop_loss", 5)), rows)
    assert [t["entryTime"] for t in free.trades] == [iso(1), iso(3)]


# -- end of data ----------------------------------------------------------------------------------
def test_end_of_data_closes_at_the_last_close_with_slippage_and_fee():
    """§5: a position open after the last candle closes at the last close, reason end_of_data.
    §5 does not say whether slippage/fee apply; the engine charges both (documented in
    ``backtest``'s docstring), so the last equity point is the cash after that sale."""
    fee, slip = 0.001, 0.002
    result = run(price_rule_flow(99), [FLAT, FLAT, (100, 111, 100, 110)], fee=fee, slippage=slip)
    units = CAPITAL / (100 * (1 + slip) * (1 + fee))
    (trade,) = result.trades
    assert (trade["exitReason"], trade["exitTime"]) == ("end_of_data", iso(2))
    assert trade["exitPrice"] == approx(110 * (1 - slip), rel=1e-15)
    assert result.equity[1] == approx(units * 100, rel=1e-12)   # cash ~0 + units × close
    assert result.equity[-1] == approx(units * 110 * (1 - slip) * (1 - fee), rel=1e-12)
    assert result.metrics["pnl"] == approx(trade["pnl"], rel=1e-12)


# -- sizing ---------------------------------------------------------------------------------------
def test_amount_sizing_spends_that_quote_amount_fee_included():
    """§4/§5: ``amount`` of quote currency: units = amount / (fill × (1 + fee)); the rest stays cash,
    so equity = cash + units × close."""
    fee, slip = 0.001, 0.002
    result = run(price_rule_flow(99, amount=2_500), [FLAT, FLAT, (100, 111, 100, 110)], fee=fee, slippage=slip)
    units = 2_500 / (100 * (1 + slip) * (1 + fee))
    assert result.trades[0]["units"] == approx(units, rel=1e-12)
    assert result.equity[1] == approx(7_500 + units * 100, rel=1e-12)
    assert result.equity[-1] == approx(7_500 + units * 110 * (1 - slip) * (1 - fee), rel=1e-12)


def test_amount_larger_than_the_cash_spends_the_cash():
    """Engine choice (§5 is silent): an ``amount`` above the cash spends all the cash."""
    result = run(price_rule_flow(99, amount=50_000), [FLAT, FLAT, FLAT], fee=0.001)
    assert result.trades[0]["units"] == approx(CAPITAL / (100 * 1.001), rel=1e-12)


def test_risk_percent_sizing_and_its_cap():
    """§4: riskPercent = % of equity lost if the stop-loss is hit; capped at 100 % of equity.
    No fees: spend = equity × 1 % / 5 % = 2,000 → 20 units at 100; out at 95 → pnl −100."""
    rows = [FLAT, FLAT, (99, 99, 94, 94), (94, 94, 94, 94)]
    result = run(price_rule_flow(99, None, ("stop_loss", 5), riskPercent=1), rows)
    (trade,) = result.trades
    assert trade["units"] == approx(CAPITAL * 0.01 / 0.05 / 100, rel=1e-12)
    assert trade["pnl"] == approx(-0.01 * CAPITAL, rel=1e-12)
    capped = run(price_rule_flow(99, None, ("stop_loss", 5), riskPercent=10), rows)  # would be 200 %
    assert capped.trades[0]["units"] == approx(CAPITAL / 100, rel=1e-12)
    # with fee and slippage the loss at the stop level (both fees, exit slippage) is still 1 %
    costly = run(price_rule_flow(99, None, ("stop_loss", 5), riskPercent=1), rows, fee=0.001, slippage=0.001)
    assert costly.trades[0]["pnl"] == approx(-0.01 * CAPITAL, rel=1e-9)


# -- conditions and logic (§4) --------------------------------------------------------------------
def test_crosses_above_and_below_exact_definition_with_equalities():
    """§4: crosses_above at t: a[t] > b[t] and a[t−1] <= b[t−1]; crosses_below mirrors it
    (a[t] < b[t] and a[t−1] >= b[t−1]); never at t = 0. ``value`` stands in for b without an edge."""
    closes = [99, 100, 101, 101, 100, 100, 102, 99, 100.5, 100, 99]
    flow = signal_flow(
        [{"id": "px", "type": "price", "data": {"field": "close"}},
         {"id": "up", "type": "condition", "data": {"operator": "crosses_above", "value": 100}},
         {"id": "down", "type": "condition", "data": {"operator": "crosses_below", "value": 100}}],
        [("px", "up", "a"), ("px", "down", "a"), ("up", "buy", None)])
    values = node_values(flow, walk(closes))
    a, b = closes, [100] * len(closes)
    up = [t > 0 and a[t] > b[t] and a[t - 1] <= b[t - 1] for t in range(len(a))]
    down = [t > 0 and a[t] < b[t] and a[t - 1] >= b[t - 1] for t in range(len(a))]
    assert up == [False, False, True, False, False, False, True, False, True, False, False]
    assert down == [False, False, False, False, False, False, False, True, False, False, True]
    assert values["up"].tolist() == up
    assert values["down"].tolist() == down


def test_condition_value_is_used_only_when_b_has_no_edge():
    """§4: ``value`` is the b operand only when b has no edge (an edge from a constant 102 wins over
    value 50); >= / <= include equality."""
    closes = [101, 102, 103]
    flow = signal_flow(
        [{"id": "px", "type": "price", "data": {"field": "close"}},
         {"id": "k", "type": "constant", "data": {"value": 102}},
         {"id": "ge_edge", "type": "condition", "data": {"operator": ">=", "value": 50}},
         {"id": "ge_value", "type": "condition", "data": {"operator": ">=", "value": 102}},
         {"id": "le_value", "type": "condition", "data": {"operator": "<=", "value": 102}}],
        [("px", "ge_edge", "a"), ("k", "ge_edge", "b"), ("px", "ge_value", "a"), ("px", "le_value", "a"),
         ("ge_edge", "buy", None)])
    values = node_values(flow, walk(closes))
    assert values["ge_edge"].tolist() == [False, True, True]
    assert values["ge_value"].tolist() == [False, True, True]
    assert values["le_value"].tolist() == [True, True, False]


def test_comparisons_with_nan_during_warm_up_are_false():
    """§4: before warm-up an indicator is NaN, and every comparison with NaN is false (crosses too:
    the first SMA value has no previous one to cross from)."""
    closes = [10, 20, 30, 10, 40]          # SMA(3): NaN, NaN, 20, 20, 26.67
    operators = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "xa": "crosses_above", "xb": "crosses_below"}
    nodes = [{"id": "px", "type": "price", "data": {"field": "close"}},
             {"id": "sma", "type": "indicator", "data": {"kind": "sma", "period": 3}},
             {"id": "not_gt", "type": "logic", "data": {"operator": "not"}}]
    nodes += [{"id": k, "type": "condition", "data": {"operator": op}} for k, op in operators.items()]
    edges = [e for k in operators for e in (("px", k, "a"), ("sma", k, "b"))]
    edges += [("gt", "not_gt", None), ("gt", "buy", None)]
    values = node_values(signal_flow(nodes, edges), walk(closes))
    assert np.isnan(values["sma"][:2]).all()
    assert values["sma"][2:].tolist() == approx([(10 + 20 + 30) / 3, (20 + 30 + 10) / 3, (30 + 10 + 40) / 3])
    assert values["gt"].tolist() == [False, False, True, False, True]
    assert values["lt"].tolist() == [False, False, False, True, False]
    assert values["ge"].tolist() == [False, False, True, False, True]
    assert values["le"].tolist() == [False, False, False, True, False]
    assert values["xa"].tolist() == [False, False, False, False, True]   # 40 > 26.7 and 10 <= 20
    assert values["xb"].tolist() == [False, False, False, True, False]   # 10 < 20 and 30 >= 20
    # ambiguity, literal reading kept: 'not' of a warm-up comparison (false) is true
    assert values["not_gt"].tolist() == [True, True, False, True, False]


def test_logic_and_or_not_and_or_of_action_inputs():
    """§4: logic and/or over any number of boolean edges, not over exactly one; several edges into
    an action are OR-ed."""
    closes = [99, 101, 104, 102]
    nodes = [{"id": "px", "type": "price", "data": {"field": "close"}},
             {"id": "c1", "type": "condition", "data": {"operator": ">", "value": 100}},    # F T T T
             {"id": "c2", "type": "condition", "data": {"operator": "<", "value": 103}},    # T T F T
             {"id": "c3", "type": "condition", "data": {"operator": ">=", "value": 102}},   # F F T T
             {"id": "and3", "type": "logic", "data": {"operator": "and"}},
             {"id": "or2", "type": "logic", "data": {"operator": "or"}},
             {"id": "not1", "type": "logic", "data": {"operator": "not"}}]
    edges = [("px", "c1", "a"), ("px", "c2", "a"), ("px", "c3", "a"), ("c1", "and3", None), ("c2", "and3", None),
             ("c3", "and3", None), ("c1", "or2", None), ("c2", "or2", None), ("c1", "not1", None),
             ("not1", "buy", None), ("c3", "buy", None)]
    flow = signal_flow(nodes, edges)
    values = node_values(flow, walk(closes))
    assert values["and3"].tolist() == [False, False, False, True]
    assert values["or2"].tolist() == [True, True, True, True]
    assert values["not1"].tolist() == [True, False, False, False]
    buy = compile_flow(flow).signals(bars(walk(closes))).buy
    assert buy.tolist() == [True, False, True, True]   # not1 OR c3


# -- metrics --------------------------------------------------------------------------------------
def test_drawdown_pnl_and_trade_counts_over_the_equity_curve():
    """§5: equity = cash + units × close; maxDrawdown = max(running peak − equity) in quote;
    maxDrawdownPercent = max(1 − equity/running peak) × 100 (here at different candles);
    pnl = final − initial, pnlPercent = pnl/initial × 100; profitFactor null without a loss."""
    result = run(price_rule_flow(50), walk([100, 90, 200, 185]))   # 100 units from bar 1 on
    equity = [CAPITAL, 100 * 90, 100 * 200, 100 * 185]              # end_of_data at 185, no costs
    peak = [max(equity[:t + 1]) for t in range(len(equity))]
    assert result.equity.tolist() == approx(equity)
    m = result.metrics
    assert m["maxDrawdown"] == approx(max(p - e for p, e in zip(peak, equity, strict=True)))  # 1,500 at t=3
    assert m["maxDrawdownPercent"] == approx(max((1 - e / p) * 100 for p, e in zip(peak, equity, strict=True)))
    assert (m["maxDrawdown"], m["maxDrawdownPercent"]) == (approx(1_500), approx(10.0))  # 10 % at t=1
    assert m["pnl"] == approx(18_500 - CAPITAL) and m["pnlPercent"] == approx(85.0)
    assert (m["totalTrades"], m["winningTrades"], m["losingTrades"], m["winRate"]) == (1, 1, 0, 1.0)
    assert m["profitFactor"] is None


def test_profit_factor_and_win_rate_with_a_win_and_a_loss():
    """§5: profitFactor = sum of winning pnl / |sum of losing pnl| (after fees); winRate in 0..1."""
    rows = [(100, 102, 99.5, 102), (102, 106, 101.5, 105), (105, 105, 97.5, 98),   # buy >101, sell <99
            (104, 104.5, 103, 104), (103, 103.5, 97, 97.5), (99, 99.5, 98.5, 99)]
    result = run(price_rule_flow(101, 99), rows)
    units1 = CAPITAL / 102
    win = units1 * (104 - 102)
    units2 = units1 * 104 / 103
    loss = units2 * (99 - 103)
    assert [t["pnl"] for t in result.trades] == approx([win, loss], rel=1e-12)
    m = result.metrics
    assert m["profitFactor"] == approx(win / abs(loss), rel=1e-12)
    assert (m["totalTrades"], m["winningTrades"], m["losingTrades"], m["winRate"]) == (2, 1, 1, 0.5)
    assert m["pnlPercent"] == approx((units2 * 99 - CAPITAL) / CAPITAL * 100, rel=1e-12)


def test_sharpe_from_the_last_equity_of_each_utc_day():
    """§5: sharpe = mean / stdev (ddof 1) of returns between the last equity of each UTC day, × √365.
    Six-hour bars: days end at bars 3, 7 and 11 (grouped by the bar's open time)."""
    closes = [100, 101, 102, 104, 103, 101, 99, 100, 105, 106, 104, 107]
    result = run(price_rule_flow(50), walk(closes), step_ms=6 * HOUR_MS)
    equity = [100 * c for c in closes]                   # 100 units from bar 1 (bar 0: 10,000 cash)
    assert result.equity.tolist() == approx(equity)
    daily = [equity[3], equity[7], equity[11]]
    returns = [daily[i] / daily[i - 1] - 1 for i in range(1, len(daily))]
    assert result.metrics["sharpeRatio"] == approx(
        statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(365), rel=1e-9)


def test_sharpe_is_zero_with_fewer_than_two_daily_returns():
    """§5: sharpe = 0 when fewer than two returns (two days → one return)."""
    result = run(price_rule_flow(50), walk([100, 110, 90, 120]), step_ms=12 * HOUR_MS)
    assert result.metrics["sharpeRatio"] == 0.0
    daily_bars = run(price_rule_flow(50), walk([100, 110, 132]), step_ms=DAY_MS)  # 3 days → 2 returns
    returns = [110 / 100 - 1, 132 / 110 - 1]
    assert daily_bars.metrics["sharpeRatio"] == approx(
        statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(365), rel=1e-9)


def test_a_flow_that_never_trades():
    """§5: no trades → pnl 0, winRate 0, profitFactor null, drawdown 0, sharpe 0 (zero deviation)."""
    result = run(price_rule_flow(1_000), [FLAT] * 60, step_ms=DAY_MS)
    m = result.metrics
    assert result.trades == [] and result.equity.tolist() == [CAPITAL] * 60
    assert (m["pnl"], m["pnlPercent"], m["winRate"], m["maxDrawdown"], m["maxDrawdownPercent"],
            m["sharpeRatio"], m["totalTrades"]) == (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    assert m["profitFactor"] is None
    assert strict_json(result.to_json())["metrics"]["profitFactor"] is None


# -- bad and short data ---------------------------------------------------------------------------
@pytest.mark.parametrize(("column", "bad"), [("close", np.nan), ("high", np.inf), ("low", -np.inf)])
def test_nan_or_infinite_prices_are_a_clear_error(column, bad):
    """Candles with NaN/inf are rejected with a message naming the column and the row."""
    candles = {"time": START_MS + np.arange(4) * HOUR_MS, "open": [100.0] * 4, "high": [101.0] * 4,
               "low": [99.0] * 4, "close": [100.0] * 4, "volume": [1.0] * 4}
    candles[column] = [100.0, 100.0, bad, 100.0]
    with pytest.raises(ValidationFailed, match=f"row 2: {column} is NaN or infinite"):
        backtest(price_rule_flow(99), candles)


def test_indicator_period_longer_than_the_data_is_a_documented_empty_run():
    """Fewer candles than the warm-up: no trade, all-capital equity, a warning (not an error)."""
    flow = signal_flow([{"id": "px", "type": "price", "data": {"field": "close"}},
                        {"id": "sma", "type": "indicator", "data": {"kind": "sma", "period": 50}},
                        {"id": "gt", "type": "condition", "data": {"operator": ">"}}],
                       [("px", "gt", "a"), ("sma", "gt", "b"), ("gt", "buy", None)])
    result = run(flow, walk([100 + i for i in range(10)]))
    assert result.trades == [] and result.equity.tolist() == [CAPITAL] * 10
    assert "no trade could happen" in result.warnings[0]
    assert strict_json(result.to_json())["metrics"]["pnl"] == 0.0


def test_to_json_is_strict_and_finite_with_trades():
    """The JSON result never holds NaN or Infinity (profitFactor null, warm-up NaNs not leaked)."""
    result = run(price_rule_flow(99, None, ("stop_loss", 5)), [FLAT, FLAT, (99, 99.5, 94, 95), FLAT],
                 fee=0.001, slippage=0.001)
    out = strict_json(result.to_json())
    assert set(out) >= {"metrics", "trades", "equityCurve"} and len(out["equityCurve"]) == 4
    numbers = [v for v in out["metrics"].values() if isinstance(v, float)]
    numbers += [v for t in out["trades"] for v in t.values() if isinstance(v, float)]
    numbers += [p["equity"] for p in out["equityCurve"]]
    assert numbers and all(math.isfinite(v) for v in numbers)
