"""Monte Carlo over a result's trades (DESIGN.md §8): how much of it was the order and the draw.

Each trade's return is its pnl over the equity at its entry (the cash before it: the strategy is
flat between trades). N resamples of those returns, each compounded from the initial capital:

* ``bootstrap`` — N draws of as many trades, with replacement (Efron 1979): the spread of
  outcomes a strategy with this trade distribution could have had;
* ``permutation`` — N random orders of the same trades: the final pnl never changes (products
  commute), the drawdown path does — how lucky the order was.

For each: the 5th, 50th and 95th percentiles of the final pnl % and of the maximum drawdown %
(peak starting at the initial capital, trade by trade), and the share of resamples that end with
a loss. Seeded (``numpy.random.default_rng(seed)``), so a run is reproducible; resamples are drawn
in chunks so memory stays bounded (:data:`_CHUNK_CELLS` returns at a time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: the most resamples a request may ask for
MAX_RESAMPLES = 10_000
_CHUNK_CELLS = 2_000_000
PERCENTILES = (5, 50, 95)


def trade_returns(spent: np.ndarray, proceeds: np.ndarray, capital: float) -> np.ndarray:
    """Each trade's pnl over the cash before it (trades in order; cash carried trade to trade)."""
    pnl = proceeds - spent
    cash_before = capital + np.r_[0.0, np.cumsum(pnl)[:-1]]
    returns: np.ndarray = pnl / cash_before
    return returns


@dataclass(frozen=True, slots=True)
class Resampled:
    """Percentiles of one resampling scheme."""

    final_pnl_percent: dict[str, float]
    max_drawdown_percent: dict[str, float]
    loss_probability: float

    def to_json(self) -> dict[str, Any]:
        return {"finalPnlPercent": self.final_pnl_percent, "maxDrawdownPercent": self.max_drawdown_percent,
                "lossProbability": self.loss_probability}


def monte_carlo(returns: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """``{"resamples", "trades", "bootstrap": {...}, "permutation": {...}}`` (see the module docstring).

    Raises:
        ValueError: no trades, or ``resamples`` outside 1..:data:`MAX_RESAMPLES`.
    """
    returns = np.asarray(returns, dtype=np.float64)
    if not len(returns):
        raise ValueError("no trades to resample")
    if not 1 <= resamples <= MAX_RESAMPLES:
        raise ValueError(f"resamples must be 1..{MAX_RESAMPLES}")
    rng = np.random.default_rng(seed)
    m = len(returns)
    chunk = max(1, _CHUNK_CELLS // m)
    out: dict[str, Any] = {"resamples": resamples, "trades": m}
    for scheme in ("bootstrap", "permutation"):
        finals, drawdowns = [], []
        for start in range(0, resamples, chunk):
            rows = min(chunk, resamples - start)
            if scheme == "bootstrap":
                drawn = returns[rng.integers(0, m, size=(rows, m))]
            else:
                drawn = returns[np.argsort(rng.random((rows, m)), axis=1)]
            final, drawdown = _paths(drawn)
            finals.append(final)
            drawdowns.append(drawdown)
        final, drawdown = np.concatenate(finals), np.concatenate(drawdowns)
        out[scheme] = Resampled(_percentiles(final), _percentiles(drawdown),
                                float(np.mean(final < 0.0))).to_json()
    return out


def _paths(drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Final pnl % and max drawdown % of each row of trade returns, compounded from 1."""
    growth = np.cumprod(1.0 + drawn, axis=1)
    peak = np.maximum.accumulate(np.maximum(growth, 1.0), axis=1)
    drawdown = (1.0 - growth / peak).max(axis=1) * 100.0
    return (growth[:, -1] - 1.0) * 100.0, drawdown


def _percentiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True)}
