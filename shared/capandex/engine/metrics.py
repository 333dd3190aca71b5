"""The seed's metrics, computed exactly as DESIGN.md §5 defines them.

One flat function (in the spirit of backtesting.py's ``compute_stats``); every division is guarded
so the result never holds NaN or infinity — the one undefined value, ``profitFactor`` without a
losing trade, is ``None`` (JSON ``null``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_MS_PER_DAY = 86_400_000


def compute_metrics(equity: np.ndarray, time_ms: np.ndarray, trade_pnl: np.ndarray,
                    capital: float, last_of_day: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics with the seed's names.

    Args:
        equity: equity at every close, quote currency.
        time_ms: bar open times, int64 epoch ms (UTC), same length as ``equity``.
        trade_pnl: pnl of every closed trade after fees, quote currency.
        capital: initial capital, quote currency.
        last_of_day: :func:`last_bar_of_day` of ``time_ms``, when the caller already has it (many
            runs over the same candles); computed here otherwise.

    Definitions (§5): ``pnl`` = final equity - capital; ``pnlPercent`` = pnl / capital * 100;
    ``winRate`` = winning / total in 0..1 (0 without trades); ``maxDrawdown`` = max(peak - equity)
    and ``maxDrawdownPercent`` = max(1 - equity / peak) * 100 with the running peak starting at
    ``capital``; ``sharpeRatio`` = mean / std (ddof 1) of the returns between the last equity of
    consecutive UTC days present in the data, times sqrt(365) (0 with fewer than two returns or no
    deviation; no risk-free rate); ``profitFactor`` = gross win / |gross loss|, None without a loss.
    """
    final = float(equity[-1]) if len(equity) else capital
    pnl = final - capital
    wins, losses = trade_pnl[trade_pnl > 0], trade_pnl[trade_pnl < 0]
    total = len(trade_pnl)
    peak = np.maximum.accumulate(np.maximum(equity, capital)) if len(equity) else np.array([capital])
    drawdown = peak - equity if len(equity) else np.zeros(1)
    return {
        "pnl": _finite(pnl),
        "pnlPercent": _finite(pnl / capital * 100.0),
        "winRate": len(wins) / total if total else 0.0,
        "maxDrawdown": _finite(float(drawdown.max())),
        # max(1 - e/p) == 1 - min(e/p) exactly (x -> 1 - x is monotone in floats too), one pass less
        "maxDrawdownPercent": _finite(float((1.0 - (equity / peak).min()) * 100.0) if len(equity) else 0.0),
        "sharpeRatio": _finite(sharpe_ratio(equity, time_ms, last_of_day)),
        "profitFactor": _finite(float(wins.sum()) / abs(float(losses.sum()))) if len(losses) else None,
        "totalTrades": total,
        "winningTrades": len(wins),
        "losingTrades": len(losses),
    }


def last_bar_of_day(time_ms: np.ndarray) -> np.ndarray:
    """True at the last bar of every UTC day that has at least one bar."""
    day = time_ms // _MS_PER_DAY
    return np.append(day[1:] != day[:-1], True)


def daily_equity(equity: np.ndarray, time_ms: np.ndarray, last_of_day: np.ndarray | None = None) -> np.ndarray:
    """The last equity of every UTC day that has at least one bar, in time order."""
    daily: np.ndarray = equity[last_bar_of_day(time_ms) if last_of_day is None else last_of_day]
    return daily


def sharpe_ratio(equity: np.ndarray, time_ms: np.ndarray, last_of_day: np.ndarray | None = None) -> float:
    """Annualised Sharpe of daily returns (sqrt(365): crypto trades every day); see compute_metrics."""
    daily = daily_equity(equity, time_ms, last_of_day)
    if len(daily) < 3:
        return 0.0
    returns = daily[1:] / daily[:-1] - 1.0
    deviation = float(np.std(returns, ddof=1))
    # a flat curve gives a deviation of rounding noise; treat anything that small as zero
    if not math.isfinite(deviation) or deviation <= 1e-15:
        return 0.0
    return float(np.mean(returns)) / deviation * math.sqrt(365.0)


def _finite(value: float) -> float:
    """A plain float; never NaN or infinite (those would mean a bug upstream, so fail loudly)."""
    value = float(value)
    if not math.isfinite(value):
        raise ArithmeticError(f"metric is not finite: {value}")
    return value
