"""Each §5 fill rule on a tiny hand-built series (fees and slippage 0 unless the test is about them)."""

from __future__ import annotations

import pytest

from capandex.engine import backtest, compile_flow, resolve_settings, run_stepper
from tests.capandex.engine.factories import bars, price_rule_flow

FLAT = (100.0, 100.5, 99.5, 100.0)


def run(flow: dict, candles, **kwargs):
    kwargs.setdefault("fee", 0.0)
    kwargs.setdefault("slippage", 0.0)
    result = backtest(flow, candles, **kwargs)
    # the stepper is the reference: every rule test also checks it agrees exactly
    compiled = compile_flow(flow)
    settings = resolve_settings(compiled.flow, kwargs.get("capital", 10_000), kwargs["fee"],
                                kwargs["slippage"])
    trades, equity = run_stepper(compiled, candles, settings)
    assert [t.to_dict() for t in trades] == result.trades
    assert equity == result.equity.tolist()
    assert result.metrics["pnl"] == pytest.approx(sum(t["pnl"] for t in result.trades), abs=1e-9)
    return result


def test_signal_fills_at_next_open_and_last_signal_does_not_fill():
    candles = bars([(100, 101, 99, 100), (102, 103, 97.5, 98), (97, 99, 96, 99), (99.5, 101, 99, 100.5)])
    result = run(price_rule_flow(99.5, 98.5), candles)
    # buy at close 0 -> open 1 (102); sell at close 1 (98 < 98.5) -> open 2 (97);
    # buy signal at the last close (100.5) does not fill
    assert [(t["entryPrice"], t["exitPrice"], t["exitReason"]) for t in result.trades] == [
        (102.0, 97.0, "signal")]
    assert result.trades[0]["entryTime"] == "2024-01-01T01:00:00Z"
    assert result.trades[0]["exitTime"] == "2024-01-01T02:00:00Z"
    assert result.equity.tolist() == [10_000, 10_000 / 102 * 98, 10_000 / 102 * 97, 10_000 / 102 * 97]


def test_gap_through_stop_fills_at_the_open():
    candles = bars([FLAT, FLAT, (90, 91, 88, 91), (91, 92, 90, 91)])
    result = run(price_rule_flow(99, None, ("stop_loss", 5)), candles)
    (trade,) = result.trades
    assert (trade["entryPrice"], trade["exitPrice"], trade["exitReason"]) == (100.0, 90.0, "stop_loss")
    assert trade["exitTime"] == "2024-01-01T02:00:00Z"


def test_stop_fills_at_level_with_slippage():
    candles = bars([FLAT, FLAT, (99, 99.5, 94, 95), (95, 95, 95, 95)])
    result = run(price_rule_flow(99, None, ("stop_loss", 5)), candles, slippage=0.01)
    (trade,) = result.trades
    assert trade["entryPrice"] == pytest.approx(101.0)
    assert trade["exitPrice"] == pytest.approx(101.0 * 0.95 * 0.99)


def test_stop_wins_over_take_profit_in_the_same_bar():
    candles = bars([FLAT, (100, 106, 94, 100), FLAT])
    result = run(price_rule_flow(99, None, ("stop_loss", 5), ("take_profit", 5)), candles)
    first = result.trades[0]
    assert (first["exitPrice"], first["exitReason"]) == (95.0, "stop_loss")


def test_take_profit_is_a_limit_without_slippage_and_fills_at_a_gap_open():
    candles = bars([FLAT, (100, 104, 99, 103), (110, 112, 109, 111), (111, 111, 111, 111)])
    result = run(price_rule_flow(200, None, ("take_profit", 5)), candles, slippage=0.0)
    assert result.trades == []  # never above 200
    flow = price_rule_flow(99, None, ("take_profit", 5))
    result = run(flow, candles, slippage=0.01)
    first = result.trades[0]
    assert first["entryPrice"] == pytest.approx(101.0)
    assert first["exitPrice"] == 110.0  # gapped above 106.05: the open, no slippage
    assert first["exitReason"] == "take_profit"


def test_trailing_level_uses_highest_high_before_the_bar():
    # entry 100; bar 1 high 120 -> level at bar 2 = 120 * 0.9 = 108; bar 1's own level was 90
    candles = bars([FLAT, (100, 120, 99, 115), (115, 116, 107, 110), (110, 111, 109, 110)])
    result = run(price_rule_flow(99, None, ("trailing_stop", 10)), candles)
    first = result.trades[0]
    assert (first["exitPrice"], first["exitReason"]) == (pytest.approx(108.0), "trailing_stop")
    assert first["exitTime"] == "2024-01-01T02:00:00Z"


def test_kill_switch_closes_at_next_open_and_stops_trading():
    candles = bars([FLAT, FLAT, (95, 95, 88, 89), (88, 90, 87, 89), (89, 95, 89, 94), (94, 95, 93, 94)])
    result = run(price_rule_flow(50, None, ("kill_switch", 10)), candles)
    (trade,) = result.trades  # close > 50 keeps firing, but nothing after the kill
    assert (trade["exitPrice"], trade["exitReason"]) == (88.0, "kill_switch")
    assert trade["exitTime"] == "2024-01-01T03:00:00Z"
    assert result.warnings and "kill switch" in result.warnings[0]


def test_end_of_data_closes_at_last_close_with_fee_and_slippage():
    candles = bars([FLAT, FLAT, (100, 111, 100, 110)])
    result = run(price_rule_flow(99), candles, fee=0.001, slippage=0.002)
    (trade,) = result.trades
    units = 10_000 / (100 * 1.002 * 1.001)
    assert trade["exitReason"] == "end_of_data"
    assert trade["units"] == pytest.approx(units, rel=1e-12)
    assert trade["exitPrice"] == pytest.approx(110 * 0.998)
    assert result.equity[-1] == pytest.approx(units * 110 * 0.998 * 0.999, rel=1e-12)


def test_fee_accounting_on_both_sides():
    candles = bars([(100, 101, 99, 100), (100, 101, 95, 96), (96, 97, 95, 96)])
    result = run(price_rule_flow(99, 97), candles, fee=0.001, slippage=0.002)
    (trade,) = result.trades
    entry, exit_ = 100 * 1.002, 96 * 0.998
    units = 10_000 / (entry * 1.001)
    assert trade["fees"] == pytest.approx(units * entry * 0.001 + units * exit_ * 0.001, rel=1e-12)
    assert trade["pnl"] == pytest.approx(units * exit_ * 0.999 - 10_000, rel=1e-12)
    assert trade["pnlPercent"] == pytest.approx(trade["pnl"] / 10_000 * 100, rel=1e-12)


def test_risk_percent_loses_exactly_that_share_at_the_stop():
    candles = bars([FLAT, FLAT, (99, 99, 94, 94), (94, 94, 94, 94)])
    result = run(price_rule_flow(99, None, ("stop_loss", 5), riskPercent=1), candles, fee=0.001,
                 slippage=0.001)
    trade = result.trades[0]
    assert trade["exitReason"] == "stop_loss"
    assert trade["pnl"] == pytest.approx(-100.0, rel=1e-12)  # 1 % of 10,000, fees and slippage included


def test_amount_sizing_spends_that_much_quote():
    candles = bars([FLAT, FLAT, (100, 110, 100, 110)])
    result = run(price_rule_flow(99, amount=2_500), candles, fee=0.001)
    assert result.trades[0]["units"] == pytest.approx(2_500 / (100 * 1.001))


def test_the_reference_stepper_does_not_import_the_simulator() -> None:
    """The stepper is the reference the simulator is proven against: it shares the rules (sizing
    included), never the optimised code it checks."""
    import ast
    from pathlib import Path

    from capandex.engine import stepper

    tree = ast.parse(Path(stepper.__file__).read_text())
    imported = {f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "capandex.engine.rules" in imported
    assert not [name for name in imported if "simulator" in name]
