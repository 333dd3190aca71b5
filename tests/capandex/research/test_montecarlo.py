"""Monte Carlo over trades: known answers on hand-made trade lists, seeded reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from capandex.engine import backtest
from capandex.research.montecarlo import monte_carlo, trade_returns
from tests.capandex.engine.factories import random_walk, sma_cross_flow


def test_trade_returns_are_pnl_over_the_equity_at_entry():
    result = backtest(sma_cross_flow(5, 20), random_walk(600, 2), fee=0.001, slippage=0.001)
    returns = trade_returns(result.table.spent, result.table.proceeds, 10_000.0)
    assert 10_000.0 * np.prod(1 + returns) == pytest.approx(result.equity[-1], rel=1e-12)
    assert returns[0] == pytest.approx(result.table.pnl[0] / 10_000.0)


def test_identical_trades_give_one_outcome_and_the_permutation_keeps_the_final_pnl():
    out = monte_carlo(np.full(10, 0.01), 200, seed=1)
    expected = (1.01 ** 10 - 1) * 100
    for scheme in ("bootstrap", "permutation"):
        assert out[scheme]["finalPnlPercent"] == pytest.approx({"p5": expected, "p50": expected, "p95": expected})
        assert out[scheme]["maxDrawdownPercent"]["p95"] == 0.0 and out[scheme]["lossProbability"] == 0.0


def test_losing_trades_always_lose_and_drawdown_follows_the_order():
    returns = np.array([0.10, -0.05, 0.10, -0.05])
    out = monte_carlo(returns, 2000, seed=3)
    final = (1.1 ** 2 * 0.95 ** 2 - 1) * 100
    assert out["permutation"]["finalPnlPercent"]["p50"] == pytest.approx(final)
    # the worst order puts both losses first: a drawdown of 1 - 0.95^2
    assert out["permutation"]["maxDrawdownPercent"]["p95"] == pytest.approx((1 - 0.95 ** 2) * 100)
    assert out["permutation"]["maxDrawdownPercent"]["p5"] == pytest.approx(5.0)
    assert monte_carlo(-np.abs(returns), 100, seed=0)["bootstrap"]["lossProbability"] == 1.0


def test_resampling_is_seeded_and_bootstrap_spreads():
    returns = np.random.default_rng(0).normal(0.002, 0.02, 300)
    assert monte_carlo(returns, 500, seed=9) == monte_carlo(returns, 500, seed=9)
    boot = monte_carlo(returns, 500, seed=9)["bootstrap"]["finalPnlPercent"]
    assert boot["p5"] < boot["p50"] < boot["p95"]
    with pytest.raises(ValueError):
        monte_carlo(np.zeros(0), 10, seed=0)
