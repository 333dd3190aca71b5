"""The Capandex flow engine: validate, compile and backtest flows (DESIGN.md §4-§6).

>>> from capandex.engine import backtest
>>> result = backtest(flow, candles)            # doctest: +SKIP
>>> result.metrics["pnl"], len(result.trades), result.equity[-1]  # doctest: +SKIP

Heavy optional dependencies (pandas, matplotlib) are never imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capandex.engine.candles import Candles
from capandex.engine.compiler import CompiledFlow, Signals, compile_flow
from capandex.engine.document import Flow, RunSettings
from capandex.engine.flow import resolve_settings, validate_flow
from capandex.engine.metrics import compute_metrics
from capandex.engine.result import (
    API_EQUITY_POINTS,
    LISTED_TRADES,
    BacktestResult,
    Trade,
    TradeTable,
    equity_curve_for_api,
    equity_curve_points,
)
from capandex.engine.simulator import Simulation, simulate
from capandex.engine.stepper import BrokerState, Order, StepResult, buy_units, run_stepper, step
from capandex.timeutil import iso_utc_array

__all__ = [
    "API_EQUITY_POINTS",
    "LISTED_TRADES",
    "BacktestResult",
    "BrokerState",
    "Candles",
    "CompiledFlow",
    "Flow",
    "Order",
    "RunSettings",
    "Signals",
    "Simulation",
    "StepResult",
    "Trade",
    "TradeTable",
    "backtest",
    "buy_units",
    "compile_flow",
    "compute_metrics",
    "equity_curve_for_api",
    "equity_curve_points",
    "resolve_settings",
    "run_stepper",
    "step",
    "validate_flow",
]


def backtest(flow: Mapping[str, Any] | Flow | CompiledFlow, candles: Any, *, capital: float | None = 10_000,
             fee: float | None = None, slippage: float | None = None) -> BacktestResult:
    """Backtest a flow over historical candles (DESIGN.md §5).

    Args:
        flow: a flow document (dict, validated here), or a validated :class:`Flow` /
            :class:`CompiledFlow`.
        candles: a :class:`Candles`, a pandas DataFrame or a mapping of arrays with ``time``
            (epoch ms or datetime64; a DataFrame may carry it as its DatetimeIndex), ``open``,
            ``high``, ``low``, ``close``, ``volume``; column names in any case; sorted ascending.
        capital: initial capital in quote currency; 10,000 by default (as in §6). Pass None to
            take the flow's ``settings.initialCapital``.
        fee: fee rate per side as a fraction (0.001 = 0.1 %); None takes the flow's
            ``settings.feeRate``, then 0.001.
        slippage: fraction added to buy fills and taken off market sell fills; None takes the
            flow's ``settings.slippage``, then 0.001.

    Returns:
        :class:`BacktestResult` with ``metrics``, ``trades``, ``equity`` (one float per candle),
        ``time`` and ``warnings``.

    Fills happen at the open after the signal's close; stops inside the bar; a position still
    open at the end closes at the last close (fee and slippage charged), so ``equity[-1]`` is
    cash and ``metrics["pnl"]`` equals the sum of the trades' pnl.

    .. warning:: Indicators are NaN during their warm-up and comparisons with NaN are false, so
       no signal fires before the slowest input has a value. When there are fewer candles than
       the warm-up, the run has no trades and ``warnings`` says so (it is not an error).

    Raises:
        ValidationFailed: the flow breaks a rule (every problem in ``details``), or the candles do
            (the row and field are named), or capital/fee/slippage are out of range.
    """
    compiled = flow if isinstance(flow, CompiledFlow) else compile_flow(flow)
    settings = resolve_settings(compiled.flow, capital, fee, slippage)
    data = Candles.from_any(candles)
    sim = simulate(data, compiled.signals(data), compiled.flow.buys, compiled.flow.risk, settings)
    table = TradeTable(entry_time=data.time[sim.entry_bar], exit_time=data.time[sim.exit_bar],
                       entry_price=sim.entry_price, exit_price=sim.exit_price, units=sim.units,
                       spent=sim.spent, proceeds=sim.proceeds, reason=sim.reason, fee=settings.fee)
    warnings = []
    if len(data) <= compiled.warmup:
        warnings.append(f"only {len(data)} candles but the flow needs {compiled.warmup + 1} before its "
                        "first signal: no trade could happen")
    if sim.killed_at is not None:
        stamp = iso_utc_array(data.time[sim.killed_at:sim.killed_at + 1])[0]
        warnings.append(f"kill switch hit at the close of {stamp}; no entries after it")
    metrics = compute_metrics(sim.equity, data.time, table.pnl, settings.capital)
    return BacktestResult(metrics=metrics, equity=sim.equity, time=data.time, table=table,
                          warnings=warnings)


