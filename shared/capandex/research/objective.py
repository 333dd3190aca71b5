"""What a trial is judged by: the added metrics, the objective and the constraints (DESIGN.md §8).

Added metrics, next to the seed's (:func:`capandex.engine.metrics.compute_metrics`):

* ``sortinoRatio`` = mean / downside deviation of the daily returns of §5 × sqrt(365), where the
  downside deviation is ``sqrt(mean(min(r, 0)²))`` (target 0, Sortino & Price 1994); 0 with fewer
  than two returns or no downside.
* ``calmarRatio`` = annualised return in % / ``maxDrawdownPercent`` (Young 1991, over the whole
  range rather than 36 months); 0 when there is no drawdown. The annualised return compounds the
  final equity over the range's calendar days: ``((final / capital) ** (365 / days) - 1) * 100``,
  where ``days`` runs from the first candle's open to the last candle's close.

Neither is ever NaN or infinite: growth faster than :data:`MAX_ANNUAL_GROWTH` per year (a few
hours of data extrapolated to a year) is clipped to it.

An objective is one metric name; ``maxDrawdown``, ``maxDrawdownPercent`` and ``losingTrades`` are
minimised, every other metric maximised. A trial whose objective is undefined (``profitFactor``
without a losing trade) ranks after every trial with a value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from capandex.errors import field_problem

_MS_PER_DAY = 86_400_000
#: annual growth factor at which annualised returns are clipped (1e12 = +1e14 %)
MAX_ANNUAL_GROWTH = 1e12

#: metric → True when larger is better
OBJECTIVES: dict[str, bool] = {
    "pnl": True, "pnlPercent": True, "winRate": True, "maxDrawdown": False, "maxDrawdownPercent": False,
    "sharpeRatio": True, "profitFactor": True, "totalTrades": True, "winningTrades": True,
    "losingTrades": False, "sortinoRatio": True, "calmarRatio": True,
}
#: the metrics of a trial, in table order
METRICS = tuple(OBJECTIVES)


def range_days(time_ms: np.ndarray) -> float:
    """Calendar days from the first candle's open to the last candle's close (the bar length is
    the smallest gap between opens); 0 for fewer than two candles."""
    if len(time_ms) < 2:
        return 0.0
    step = int(np.diff(time_ms).min())
    return float(time_ms[-1] - time_ms[0] + step) / _MS_PER_DAY


def annualised_return_percent(final: float, initial: float, days: float) -> float:
    """``((final / initial) ** (365 / days) - 1) * 100``; 0 for an empty range, -100 when nothing is
    left, clipped at :data:`MAX_ANNUAL_GROWTH`."""
    if days <= 0 or initial <= 0:
        return 0.0
    if final <= 0:
        return -100.0
    exponent = min(math.log(final / initial) * 365.0 / days, math.log(MAX_ANNUAL_GROWTH))
    return math.expm1(exponent) * 100.0


def sortino_ratio(daily_returns: np.ndarray) -> float:
    """Annualised Sortino ratio of daily returns (see the module docstring)."""
    if len(daily_returns) < 2:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(daily_returns, 0.0) ** 2)))
    if not math.isfinite(downside) or downside <= 1e-15:  # rounding noise counts as none
        return 0.0
    return float(np.mean(daily_returns)) / downside * math.sqrt(365.0)


def added_metrics(daily_returns: np.ndarray, final_equity: float, capital: float, days: float,
                  max_drawdown_percent: float) -> dict[str, float]:
    """``sortinoRatio`` and ``calmarRatio`` of one run (see the module docstring)."""
    annual = annualised_return_percent(final_equity, capital, days)
    calmar = annual / max_drawdown_percent if max_drawdown_percent > 0 else 0.0
    return {"sortinoRatio": sortino_ratio(daily_returns), "calmarRatio": calmar}


def daily_returns(daily_equity: np.ndarray) -> np.ndarray:
    """Returns between consecutive daily equities (the series ``sharpeRatio`` uses)."""
    returns: np.ndarray = daily_equity[1:] / daily_equity[:-1] - 1.0
    return returns


@dataclass(frozen=True, slots=True)
class Constraints:
    """What a trial's result must satisfy to win: at least ``min_trades`` closed trades and a
    ``maxDrawdownPercent`` of at most ``max_drawdown_percent`` (None: no limit)."""

    min_trades: int = 0
    max_drawdown_percent: float | None = None

    def satisfied(self, metrics: Mapping[str, Any]) -> bool:
        if metrics["totalTrades"] < self.min_trades:
            return False
        return self.max_drawdown_percent is None or metrics["maxDrawdownPercent"] <= self.max_drawdown_percent

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"minTrades": self.min_trades}
        if self.max_drawdown_percent is not None:
            out["maxDrawdownPercent"] = self.max_drawdown_percent
        return out


@dataclass(frozen=True, slots=True)
class Objective:
    """The metric to optimise and its direction (``maximize``)."""

    metric: str

    @property
    def maximize(self) -> bool:
        return OBJECTIVES[self.metric]

    def score(self, metrics: Mapping[str, Any] | None) -> float | None:
        """The metric signed so that larger is better; None when the trial failed or the metric is
        undefined."""
        if metrics is None or metrics.get(self.metric) is None:
            return None
        value = float(metrics[self.metric])
        return value if self.maximize else -value


def parse_objective(raw: Any, problems: list[dict[str, Any]], field: str = "objective") -> Objective:
    """An objective name (default ``sharpeRatio``); an unknown one adds a problem."""
    name = "sharpeRatio" if raw is None else raw
    if name not in OBJECTIVES:
        problems.append(field_problem(field, f"must be one of {', '.join(OBJECTIVES)}"))
        return Objective("sharpeRatio")
    return Objective(name)


def parse_constraints(raw: Any, problems: list[dict[str, Any]], field: str = "constraints") -> Constraints:
    """``{"minTrades": int >= 0, "maxDrawdownPercent": number in (0, 100]}`` (both optional)."""
    if raw is None:
        return Constraints()
    if not isinstance(raw, Mapping):
        problems.append(field_problem(field, "must be an object with minTrades and/or maxDrawdownPercent"))
        return Constraints()
    unknown = sorted(set(raw) - {"minTrades", "maxDrawdownPercent"})
    if unknown:
        problems.append(field_problem(field, f"unknown key(s) {', '.join(unknown)}; use minTrades, "
                                             "maxDrawdownPercent"))
    min_trades, max_dd = raw.get("minTrades", 0), raw.get("maxDrawdownPercent")
    if isinstance(min_trades, bool) or not isinstance(min_trades, int) or not 0 <= min_trades <= 1_000_000:
        problems.append(field_problem(f"{field}.minTrades", "must be a whole number from 0 to 1,000,000"))
        min_trades = 0
    if max_dd is not None and (isinstance(max_dd, bool) or not isinstance(max_dd, int | float)
                               or not 0 < max_dd <= 100):
        problems.append(field_problem(f"{field}.maxDrawdownPercent", "must be a number in (0, 100]"))
        max_dd = None
    return Constraints(min_trades, None if max_dd is None else float(max_dd))

