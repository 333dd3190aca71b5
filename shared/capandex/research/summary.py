"""The result of a finished study: the winner, the top trials, walk-forward, robustness, overfitting.

:func:`summarize` is the reduce step shared by every path (library, CLI, process pool, the Step
Functions ``Reduce`` task). It re-runs the winner with :func:`capandex.engine.backtest` (its trades
feed Monte Carlo, its daily returns the Deflated Sharpe Ratio), re-runs it with fees and slippage
doubled (cost stress), runs each walk-forward window's winner out of sample, and computes PBO over
the whole-range trials. Every number is finite or ``null`` in JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from capandex.engine import API_EQUITY_POINTS, Candles, backtest, equity_curve_points, resolve_settings, validate_flow
from capandex.engine.metrics import daily_equity
from capandex.research.montecarlo import monte_carlo, trade_returns
from capandex.research.objective import METRICS, added_metrics, daily_returns, range_days
from capandex.research.overfitting import deflated_sharpe, pbo
from capandex.research.runner import Costs, scope_candles
from capandex.research.space import Params, apply_params
from capandex.research.study import Study
from capandex.research.walkforward import (
    Window,
    WindowRun,
    annualised,
    candle_span,
    efficiency,
    run_out_of_sample,
    stitch,
)
from capandex.timeutil import iso_utc_array

#: trials listed in the result (the whole table is in ``trials`` of the CLI, and in the store)
TOP_TRIALS = 20
#: cost stress multiplies fee and slippage by this, capped at the engine's 0.5 limit
COST_STRESS = 2.0
_MAX_COST = 0.5


def summarize(study: Study, document: Mapping[str, Any], candles: Candles, costs: Costs,
              windows: list[Window], *, equity_points: int | None = API_EQUITY_POINTS) -> dict[str, Any]:
    """The optimisation's result (see the module docstring); ``equity_points`` caps the walk-forward
    equity curve's length (None: every candle)."""
    spec = study.spec
    table, kinds = study.tables[0], spec.space.whole
    ranking = table.ranking(spec.objective, spec.constraints)
    best_row = table.best(spec.objective, spec.constraints)
    out: dict[str, Any] = {
        "method": spec.method, "objective": spec.objective.metric, "constraints": spec.constraints.to_json(),
        "evaluated": len(table), "refused": len(table.errors),
        "feasible": int(table.feasible(spec.constraints).sum()),
        "best": None, "top": [table.trial(int(row), kinds) for row in ranking[:TOP_TRIALS]],
    }
    if best_row is None:
        out["note"] = "no trial satisfies the constraints with a defined objective"
    else:
        best = table.trial(best_row, kinds)
        out["best"] = {"params": best["params"], "metrics": best["metrics"]}
        winner = run_metrics(document, best["params"], candles, costs)[0]
        out["robustness"] = _robustness(document, best["params"], winner, candles, costs, spec.monte_carlo, spec.seed)
        out["overfitting"] = _overfitting(study, winner)
    if spec.walk_forward is not None:
        out["walkForward"] = _walk_forward(study, document, candles, costs, windows, equity_points)
    return out


def run_metrics(document: Mapping[str, Any], params: Params, candles: Candles, costs: Costs,
                *, fee: float | None = None, slippage: float | None = None) -> tuple[Any, dict[str, Any]]:
    """``backtest()`` of the modified flow and its metrics with the added ones."""
    result = backtest(apply_params(document, params), candles, capital=costs.capital,
                      fee=costs.fee if fee is None else fee, slippage=costs.slippage if slippage is None else slippage)
    returns = daily_returns(daily_equity(result.equity, result.time))
    capital = _capital(document, costs)
    metrics = result.metrics | added_metrics(returns, float(result.equity[-1]), capital, range_days(result.time),
                                             result.metrics["maxDrawdownPercent"])
    return result, metrics


def _capital(document: Mapping[str, Any], costs: Costs) -> float:
    return resolve_settings(validate_flow(document), costs.capital, costs.fee, costs.slippage).capital


def _robustness(document: Mapping[str, Any], params: Params, winner: Any, candles: Candles, costs: Costs,
                resamples: int | None, seed: int) -> dict[str, Any]:
    settings = resolve_settings(validate_flow(document), costs.capital, costs.fee, costs.slippage)
    fee, slippage = (min(_MAX_COST, COST_STRESS * value) for value in (settings.fee, settings.slippage))
    _, stressed = run_metrics(document, params, candles, costs, fee=fee, slippage=slippage)
    out: dict[str, Any] = {"costStress": {"fee": fee, "slippage": slippage, "metrics": stressed}}
    if resamples is not None:
        returns = trade_returns(winner.table.spent, winner.table.proceeds, settings.capital)
        out["monteCarlo"] = (monte_carlo(returns, resamples, seed) if len(returns)
                             else {"resamples": resamples, "trades": 0, "note": "the winner made no trade"})
    return out


def _overfitting(study: Study, winner: Any) -> dict[str, Any]:
    table = study.tables[0]
    ran = ~np.isnan(table.metrics[:, METRICS.index("pnl")])  # refused trials have no metrics
    out: dict[str, Any] = {"pbo": None, "deflatedSharpe": None}
    if table.blocks is None or ran.sum() < 2:
        out["note"] = "PBO needs at least two trials and 32 days of daily returns"
    else:
        out["pbo"] = pbo(table.blocks[ran], seed=study.spec.seed).to_json()
    daily_sharpes = table.metrics[ran, METRICS.index("sharpeRatio")] / math.sqrt(365.0)  # annualised → per day
    dsr = deflated_sharpe(daily_returns(daily_equity(winner.equity, winner.time)), daily_sharpes)
    out["deflatedSharpe"] = None if dsr is None else dsr.to_json()
    return out


def _walk_forward(study: Study, document: Mapping[str, Any], candles: Candles, costs: Costs,
                  windows: list[Window], equity_points: int | None) -> dict[str, Any]:
    spec, kinds = study.spec, study.spec.space.whole
    capital = _capital(document, costs)
    rows: list[dict[str, Any]] = []
    runs: list[WindowRun] = []
    pairs: list[tuple[float, float]] = []
    for index, window in enumerate(windows, start=1):
        table = study.tables[index]
        row: dict[str, Any] = {"window": window.number, **_bounds(window)}
        best_row = table.best(spec.objective, spec.constraints)
        if best_row is None:
            rows.append(row | {"params": None, "inSample": None, "outOfSample": None,
                               "note": "no trial of the train window satisfies the constraints"})
            continue
        best = table.trial(best_row, kinds)
        run = run_out_of_sample(document, best["params"], candles, window, capital=costs.capital, fee=costs.fee,
                                slippage=costs.slippage)
        row |= {"params": best["params"], "inSample": best["metrics"],
                "outOfSample": None if run is None else run.metrics}
        if run is not None:
            runs.append(run)
            train = scope_candles(candles, study.scopes[index])
            train_start, train_end = candle_span(train.time)
            test_start, test_end = candle_span(run.time)
            pairs.append((annualised(best["metrics"], train_start, train_end, capital),
                          annualised(run.metrics, test_start, test_end, capital)))
        rows.append(row)
    stitched = stitch(runs, capital)
    out: dict[str, Any] = {**(spec.walk_forward.to_json() if spec.walk_forward else {}), "windows": rows,
                           **efficiency(pairs)}
    out["outOfSample"] = None if stitched is None else {
        "metrics": stitched.metrics, "equityCurve": equity_curve_points(stitched.time, stitched.equity, equity_points)}
    return out


def _bounds(window: Window) -> dict[str, str]:
    stamps = iso_utc_array(np.array([window.train_start, window.train_end, window.test_start, window.test_end]))
    return dict(zip(("trainStart", "trainEnd", "testStart", "testEnd"), stamps, strict=True))
