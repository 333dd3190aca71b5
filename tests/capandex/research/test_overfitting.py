"""PBO (CSCV) and the Deflated Sharpe Ratio on synthetic cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capandex.research.overfitting import (
    EULER_GAMMA,
    block_statistics,
    deflated_sharpe,
    expected_max_sharpe,
    pbo,
)


def noise(days: int = 1000, trials: int = 100, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, (days, trials))


def test_pure_noise_strategies_have_a_pbo_near_one_half():
    values = [pbo(block_statistics(noise(seed=seed))).pbo for seed in range(4)]
    assert 0.35 < np.mean(values) < 0.65


def test_a_planted_edge_gives_a_low_pbo():
    returns = noise()
    returns[:, 7] += 0.003  # one trial earns 0.3 standard deviations a day
    result = pbo(block_statistics(returns))
    assert result.pbo < 0.05 and result.trials == 100 and result.blocks == 16
    assert len(result.logits) == math.comb(16, 8)


def test_block_statistics_match_a_direct_computation_of_cscv():
    returns = noise(days=64, trials=5, seed=3)
    stats = block_statistics(returns, blocks=4)
    assert stats.shape == (5, 4, 3) and stats[:, :, 0].tolist() == [[16.0] * 4] * 5
    # one combination by hand: blocks 0 and 1 in sample
    inside, outside = returns[:32], returns[32:]
    best = int(np.argmax(inside.mean(0) / inside.std(0, ddof=1)))
    oos = outside.mean(0) / outside.std(0, ddof=1)
    rank = 1 + (oos < oos[best]).sum()
    first_logit = math.log((rank / 6) / (1 - rank / 6))
    assert pbo(stats).logits[0] == pytest.approx(first_logit, rel=1e-9)


def test_pbo_samples_trials_above_its_cap_reproducibly():
    stats = block_statistics(noise(days=200, trials=60))
    once, again = pbo(stats, max_trials=20, seed=4), pbo(stats, max_trials=20, seed=4)
    assert once.sampled and once.trials == 20 and once.pbo == again.pbo


def test_expected_max_sharpe_is_the_false_strategy_theorem():
    from statistics import NormalDist

    phi = NormalDist().inv_cdf
    expected = math.sqrt(0.04) * ((1 - EULER_GAMMA) * phi(1 - 1 / 100) + EULER_GAMMA * phi(1 - 1 / (100 * math.e)))
    assert expected_max_sharpe(0.04, 100) == pytest.approx(expected) and expected_max_sharpe(0.04, 1) == 0.0


def test_the_deflated_sharpe_does_not_call_the_best_of_noise_significant():
    returns = noise()
    sharpes = returns.mean(0) / returns.std(0, ddof=1)
    best = int(np.argmax(sharpes))
    dsr = deflated_sharpe(returns[:, best], sharpes)
    assert dsr is not None and dsr.dsr < 0.95 and dsr.sharpe == pytest.approx(sharpes[best])
    # the same winner alone (one trial, no selection) looks far better: the deflation is the point
    assert deflated_sharpe(returns[:, best], sharpes[best:best + 1]).dsr > dsr.dsr


def test_a_planted_edge_is_significant_after_deflation():
    returns = noise()
    returns[:, 7] += 0.003
    sharpes = returns.mean(0) / returns.std(0, ddof=1)
    assert deflated_sharpe(returns[:, 7], sharpes).dsr > 0.99


def test_degenerate_inputs_give_none():
    assert deflated_sharpe(np.array([0.01, 0.02]), np.zeros(3)) is None
    assert deflated_sharpe(np.zeros(30), np.zeros(3)) is None
    with pytest.raises(ValueError):
        pbo(block_statistics(noise(trials=1)))
