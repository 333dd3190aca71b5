"""Walk-forward analysis (DESIGN.md §8; Pardo, "The Evaluation and Optimization of Trading
Strategies", 2nd ed., 2008, ch. 11).

Windows of ``train`` then ``test`` time, from the first candle's open ``t0`` to the last candle's
close: test window k is ``[t0 + train + k·test, t0 + train + (k+1)·test)`` (the last one cut at the
end of the data), so the test windows do not overlap and together cover everything after the
first train window. Its train window is the ``train`` before it (rolling) or everything from
``t0`` (anchored). Each train window is optimised on its own candles only (the study's scope ends
where the test begins); the winner then runs on the test window (:func:`run_out_of_sample`) with
its indicators warmed up on candles *before* the test window — never after it.

The stitched out-of-sample equity chains the test windows' returns (each window starts from the
capital; window k is scaled by the stitched equity where window k-1 ended). Walk-forward
efficiency = the mean over windows of annualised test return / annualised train return, windows
whose train return is not positive excluded (and counted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from capandex.engine import Candles, Signals, compile_flow, resolve_settings
from capandex.engine.metrics import compute_metrics, daily_equity
from capandex.engine.simulator import simulate
from capandex.errors import field_problem
from capandex.research.objective import added_metrics, annualised_return_percent, daily_returns, range_days
from capandex.research.request import WalkForwardSpec, format_duration
from capandex.research.space import Params, apply_params, raise_problems

_MS_PER_DAY = 86_400_000
#: the most windows a walk-forward may have
MAX_WINDOWS = 100


@dataclass(frozen=True, slots=True)
class Window:
    """One window's bounds in epoch ms, each ``[start, end)``."""

    number: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


def windows_between(start_ms: int, end_ms: int, spec: WalkForwardSpec) -> list[Window]:
    """The windows of a range ``[start_ms, end_ms)``.

    Raises:
        ValidationFailed: naming ``walkForward``: the range is shorter than one train and one test
            window, or would need more than :data:`MAX_WINDOWS` windows.
    """
    span = end_ms - start_ms
    problems = []
    if spec.train_ms + spec.test_ms > span:
        problems.append(field_problem("walkForward", f"the candles span {format_duration(max(span, 0))}, less "
                                                     f"than train + test ({format_duration(spec.train_ms)} + "
                                                     f"{format_duration(spec.test_ms)})"))
    elif -(-(span - spec.train_ms) // spec.test_ms) > MAX_WINDOWS:
        problems.append(field_problem("walkForward.test", f"makes more than {MAX_WINDOWS} windows; lengthen it"))
    raise_problems("walk-forward", problems)
    out: list[Window] = []
    test_start = start_ms + spec.train_ms
    while test_start < end_ms:
        train_start = start_ms if spec.anchored else test_start - spec.train_ms
        out.append(Window(len(out) + 1, train_start, test_start, test_start, min(test_start + spec.test_ms, end_ms)))
        test_start += spec.test_ms
    return out


def candle_span(time_ms: np.ndarray) -> tuple[int, int]:
    """``(first open, last close)`` of a candle series, the bar length being the smallest gap."""
    step = int(np.diff(time_ms).min()) if len(time_ms) > 1 else 1
    return int(time_ms[0]), int(time_ms[-1]) + step


@dataclass(frozen=True, slots=True)
class WindowRun:
    """A winner's out-of-sample run: metrics, equity per test candle, their times, trade pnl."""

    metrics: dict[str, Any]
    equity: np.ndarray
    time: np.ndarray
    pnl: np.ndarray


def run_out_of_sample(document: Mapping[str, Any], params: Params, candles: Candles, window: Window, *,
                      capital: float | None, fee: float | None, slippage: float | None) -> WindowRun | None:
    """Backtest ``params`` on the window's test candles as §5, signals computed on the candles from
    the warm-up before the test window through its end (the compiled flow's ``history`` bars, or
    every earlier candle when it needs them all). None when the test window holds no candle."""
    start, stop = (int(i) for i in np.searchsorted(candles.time, (window.test_start, window.test_end)))
    if stop <= start:
        return None
    compiled = compile_flow(apply_params(document, params))
    settings = resolve_settings(compiled.flow, capital, fee, slippage)
    first = 0 if compiled.history is None else max(0, start - compiled.history)
    signals = compiled.signals(candles.slice(first, stop))
    offset = start - first
    test = candles.slice(start, stop)
    sim = simulate(test, Signals(buy=signals.buy[offset:], sell=signals.sell[offset:], choice=signals.choice[offset:]),
                   compiled.flow.buys, compiled.flow.risk, settings)
    pnl = sim.proceeds - sim.spent
    return WindowRun(_metrics(sim.equity, test.time, pnl, settings.capital), sim.equity, test.time, pnl)


def _metrics(equity: np.ndarray, time_ms: np.ndarray, pnl: np.ndarray, capital: float) -> dict[str, Any]:
    metrics = compute_metrics(equity, time_ms, pnl, capital)
    returns = daily_returns(daily_equity(equity, time_ms))
    return metrics | added_metrics(returns, float(equity[-1]), capital, range_days(time_ms),
                                   metrics["maxDrawdownPercent"])


@dataclass(frozen=True, slots=True)
class Stitched:
    """The chained out-of-sample equity and its metrics."""

    equity: np.ndarray
    time: np.ndarray
    metrics: dict[str, Any]


def stitch(runs: list[WindowRun], capital: float) -> Stitched | None:
    """Chain the test windows' returns from ``capital`` (see the module docstring)."""
    if not runs:
        return None
    level, equities, pnls = capital, [], []
    for run in runs:
        scale = level / capital
        equities.append(run.equity * scale)
        pnls.append(run.pnl * scale)
        level = float(equities[-1][-1])
    equity, time = np.concatenate(equities), np.concatenate([run.time for run in runs])
    return Stitched(equity, time, _metrics(equity, time, np.concatenate(pnls), capital))


def efficiency(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """Walk-forward efficiency from ``(annualised train %, annualised test %)`` per window."""
    used = [test / train for train, test in pairs if train > 0]
    return {"efficiency": float(np.mean(used)) if used else None, "windowsUsed": len(used),
            "windowsExcluded": len(pairs) - len(used)}


def annualised(metrics: Mapping[str, Any], start_ms: int, end_ms: int, capital: float) -> float:
    """A run's annualised return in % over ``[start_ms, end_ms)`` (see
    :func:`~capandex.research.objective.annualised_return_percent`)."""
    final = capital * (1.0 + metrics["pnlPercent"] / 100.0)
    return annualised_return_percent(final, capital, (end_ms - start_ms) / _MS_PER_DAY)
