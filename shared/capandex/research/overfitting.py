"""How likely an optimisation's winner is luck: PBO by CSCV and the Deflated Sharpe Ratio (DESIGN.md §8).

**Probability of Backtest Overfitting** — Bailey, Borwein, López de Prado & Zhu, "The Probability
of Backtest Overfitting", Journal of Computational Finance 20(4), 2017 (SSRN 2326253, 2015),
combinatorially symmetric cross-validation: the T × N matrix of per-day returns of N trials is cut
into S contiguous row blocks (S even, default 16); for each of the C(S, S/2) ways to pick half the
blocks as in-sample, the trial with the best in-sample Sharpe ratio is ranked among all trials by
out-of-sample Sharpe ratio (rank 1 = worst, N = best; ties get their average rank); with
ω = rank / (N + 1) and λ = ln(ω / (1 − ω)), PBO is the share of combinations with λ ≤ 0 — how often
the in-sample winner is no better than the median out of sample. Pure noise gives ~0.5; a real edge
gives ~0.

A trial's Sharpe ratio over a set of blocks needs only each block's count, sum and sum of squares
of returns (:func:`capandex.research.batch.block_stats`), so the matrix itself is never held: N
trials cost N × S × 3 numbers. Above :data:`PBO_MAX_TRIALS` trials a seeded uniform sample of
them is used (the result says how many); C(16, 8) = 12,870 combinations × 2,000 trials take
~1-2 s.

**Deflated Sharpe Ratio** — Bailey & López de Prado, "The Deflated Sharpe Ratio: Correcting for
Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5),
2014: with the winner's per-day Sharpe SR̂ over T days, the skewness γ₃ and (non-excess) kurtosis
γ₄ of its daily returns, N trials and the variance V of the trials' per-day Sharpe ratios,
SR₀ = √V · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e))) with γ the Euler–Mascheroni constant, and
DSR = Φ((SR̂ − SR₀) √(T − 1) / √(1 − γ₃ SR̂ + (γ₄ − 1)/4 · SR̂²)): the probability that the
winner's true Sharpe ratio exceeds what the best of N skill-less trials would show. Above 0.95 the
winner is significant at 5 %.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

#: the default number of row blocks of CSCV (the paper's example uses 16)
BLOCKS = 16
#: trials used by CSCV at most (a seeded sample above it)
PBO_MAX_TRIALS = 2_000
#: combinations evaluated per matrix product (bounds memory: chunk × trials × 8 bytes)
_CHUNK_CELLS = 500_000
EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class Pbo:
    """CSCV's result: ``pbo`` in [0, 1]; ``logits`` the λ of every combination; ``trials`` and
    ``blocks`` what it ran on (``sampled``: a sample of the trials, see the module docstring)."""

    pbo: float
    logits: np.ndarray
    trials: int
    blocks: int
    sampled: bool

    def to_json(self) -> dict[str, object]:
        return {"pbo": self.pbo, "combinations": len(self.logits), "trials": self.trials, "blocks": self.blocks,
                "sampled": self.sampled, "medianLogit": float(np.median(self.logits))}


def block_statistics(returns: np.ndarray, blocks: int = BLOCKS) -> np.ndarray:
    """``(N, S, 3)`` count, sum and sum of squares per block of a ``(T, N)`` returns matrix, blocks
    as in ``numpy.array_split`` (the first ``T % S`` hold one row more)."""
    parts = np.array_split(np.asarray(returns, dtype=np.float64), blocks, axis=0)
    stats = [np.stack([np.full(part.shape[1], len(part), dtype=np.float64), part.sum(axis=0),
                       (part * part).sum(axis=0)], axis=-1) for part in parts]
    return np.stack(stats, axis=1)


def pbo(stats: np.ndarray, *, seed: int = 0, max_trials: int = PBO_MAX_TRIALS) -> Pbo:
    """PBO by CSCV from per-trial block statistics ``(N, S, 3)`` (see the module docstring).

    Raises:
        ValueError: fewer than two trials, an odd number of blocks, or a block with fewer than two
            returns.
    """
    trials, blocks, _ = stats.shape
    if trials < 2 or blocks < 2 or blocks % 2:
        raise ValueError("CSCV needs at least two trials and an even number of blocks")
    if stats[:, :, 0].min() < 2:
        raise ValueError("every block needs at least two returns")
    sampled = trials > max_trials
    if sampled:
        keep = np.sort(np.random.default_rng(seed).choice(trials, max_trials, replace=False))
        stats, trials = stats[keep], max_trials
    masks = np.array([[b in chosen for b in range(blocks)] for chosen in
                      itertools.combinations(range(blocks), blocks // 2)], dtype=np.float64)
    count, total, squares = (stats[:, :, i].T for i in range(3))  # each (S, N)
    sums = [count.sum(axis=0), total.sum(axis=0), squares.sum(axis=0)]  # over all blocks, each (N,)
    logits = []
    chunk = max(1, _CHUNK_CELLS // trials)
    for start in range(0, len(masks), chunk):
        inside = masks[start:start + chunk]
        in_stats = [inside @ count, inside @ total, inside @ squares]
        in_sharpe = _sharpe(*in_stats)
        out_sharpe = _sharpe(*(whole[None, :] - part for whole, part in zip(sums, in_stats, strict=True)))
        best = np.argmax(in_sharpe, axis=1)
        chosen = out_sharpe[np.arange(len(best)), best][:, None]
        rank = (out_sharpe < chosen).sum(axis=1) + ((out_sharpe == chosen).sum(axis=1) + 1) / 2.0
        omega = rank / (trials + 1.0)
        logits.append(np.log(omega / (1.0 - omega)))
    values = np.concatenate(logits)
    return Pbo(float(np.mean(values <= 0.0)), values, trials, blocks, sampled)


def _sharpe(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Per-period Sharpe ratio (mean / sample standard deviation) from count, sum and sum of
    squares; 0 where the deviation is zero."""
    mean = total / count
    variance = np.maximum(squares - total * mean, 0.0) / (count - 1.0)
    deviation = np.sqrt(variance)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(deviation > 1e-15, mean / deviation, 0.0)


@dataclass(frozen=True, slots=True)
class DeflatedSharpe:
    """The DSR of a winner and what went into it (per-day Sharpe ratios, not annualised)."""

    dsr: float
    sharpe: float
    benchmark: float
    trials: int
    days: int
    skewness: float
    kurtosis: float

    def to_json(self) -> dict[str, object]:
        return {"dsr": self.dsr, "dailySharpe": self.sharpe, "expectedMaxSharpe": self.benchmark,
                "trials": self.trials, "days": self.days, "skewness": self.skewness, "kurtosis": self.kurtosis,
                "significant": self.dsr > 0.95}


def expected_max_sharpe(variance: float, trials: int) -> float:
    """SR₀: the Sharpe ratio the best of ``trials`` skill-less trials is expected to show, given
    the variance of the trials' Sharpe ratios (the False Strategy Theorem of the 2014 paper)."""
    if trials < 2 or variance <= 0:
        return 0.0
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / trials)
                                  + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (trials * math.e)))


def deflated_sharpe(returns: np.ndarray, trial_sharpes: np.ndarray) -> DeflatedSharpe | None:
    """DSR of a winner with daily ``returns`` among trials whose per-day Sharpe ratios are
    ``trial_sharpes`` (the winner's included). None when it is undefined: fewer than three
    returns, no deviation, or a non-positive variance term (extreme skew)."""
    returns = np.asarray(returns, dtype=np.float64)
    days = len(returns)
    if days < 3:
        return None
    deviation = float(np.std(returns, ddof=1))
    if not math.isfinite(deviation) or deviation <= 1e-15:
        return None
    sharpe = float(np.mean(returns)) / deviation
    centred = returns - returns.mean()
    m2 = float(np.mean(centred ** 2))
    skewness = float(np.mean(centred ** 3)) / m2 ** 1.5
    kurtosis = float(np.mean(centred ** 4)) / m2 ** 2
    trials = len(trial_sharpes)
    variance = float(np.var(trial_sharpes, ddof=1)) if trials > 1 else 0.0
    benchmark = expected_max_sharpe(variance, trials)
    spread = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe ** 2
    if spread <= 0:
        return None
    dsr = _NORMAL.cdf((sharpe - benchmark) * math.sqrt(days - 1) / math.sqrt(spread))
    return DeflatedSharpe(dsr, sharpe, benchmark, trials, days, skewness, kurtosis)
