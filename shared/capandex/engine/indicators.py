"""Technical indicators in numpy, equal to TA-Lib's functions of the same name.

Each function takes float64 arrays and returns arrays of the same length, NaN during the warm-up
(TA-Lib's "lookback"): the first value sits at the same index as TA-Lib's first value. Seeding and
smoothing follow TA-Lib's C code in its default compatibility mode:

* EMA seeds with the SMA of the first ``period`` values, then ``k = 2 / (period + 1)``.
* RSI and ATR use Wilder smoothing seeded with the plain mean of the first ``period`` changes.
* MACD seeds its fast EMA on the window that ends where the slow EMA's seed ends (TA-Lib's quirk:
  so ``MACD`` differs from ``EMA(fast) - EMA(slow)`` during the first bars).
* Bollinger uses the population standard deviation (ddof 0).

Every indicator costs O(n) time and memory whatever its period: rolling sums, recursive
smoothing, or per-block running sums and extremes (:func:`_windows`), never an array of
n × period. A period longer than the series gives an all-NaN result of the series' length (the
warm-up never ends), not an array sized by the period.

An input that starts with NaN (an indicator fed by another indicator) is computed on its finite
suffix, as the TA-Lib Python wrapper does. The recursive ones (EMA, RSI, ATR, MACD) depend on
where the series starts; :func:`convergence_bars` says how much history makes that negligible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: TA-Lib's TA_IS_ZERO tolerance, used where TA-Lib tests a denominator against zero
_ZERO = 1e-8


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _finite_suffix(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Run ``fn`` on the part of ``x`` after its leading NaNs and pad the result back."""

    def wrapper(x: np.ndarray, *args: int | float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        finite = np.isfinite(x)
        start = int(np.argmax(finite)) if finite.any() else len(x)
        if start == 0:
            return fn(x, *args)
        out = _nan(len(x))
        out[start:] = fn(x[start:], *args)
        return out

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def _rolling_sum(x: np.ndarray, period: int) -> np.ndarray:
    """Sum of the last ``period`` values at each index (NaN before ``period - 1``)."""
    out = _nan(len(x))
    if len(x) >= period:
        c = np.cumsum(x)
        out[period - 1] = c[period - 1]
        out[period:] = c[period:] - c[:-period]
    return out


def _recursive(x: np.ndarray, alpha: float, seed_index: int, seed: float) -> np.ndarray:
    """``y[i] = y[i-1] + alpha * (x[i] - y[i-1])`` from ``y[seed_index] = seed``; NaN before.

    Evaluated as a scaled cumulative sum in blocks, so it is vectorised and stays accurate: within
    a block of ``m`` bars the decay ``(1 - alpha) ** m`` is kept above 1e-200.
    """
    n = len(x)
    out = _nan(n)
    if seed_index >= n:
        return out
    out[seed_index] = seed
    beta = 1.0 - alpha
    if beta <= 0.0:  # alpha == 1: the series itself
        out[seed_index + 1:] = x[seed_index + 1:]
        return out
    block = max(1, min(n, int(-200.0 / math.log10(beta)) if beta < 1.0 else n))
    prev, i = seed, seed_index + 1
    while i < n:
        chunk = x[i:i + block]
        powers = beta ** np.arange(1, len(chunk) + 1)
        # y[j] = beta^j * (prev + sum_{m<=j} alpha * x[m] / beta^m)
        y = powers * (prev + np.cumsum(alpha * chunk / powers))
        out[i:i + len(chunk)] = y
        prev, i = y[-1], i + len(chunk)
    return out


@_finite_suffix
def sma(x: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average (TA-Lib ``SMA``); first value at index ``period - 1``."""
    return _rolling_sum(x, period) / period


@_finite_suffix
def ema(x: np.ndarray, period: int) -> np.ndarray:
    """Exponential moving average (TA-Lib ``EMA``): SMA seed at ``period - 1``, k = 2/(period+1)."""
    return _ema_from(x, period, period - 1)


def _ema_from(x: np.ndarray, period: int, seed_end: int) -> np.ndarray:
    if seed_end >= len(x):
        return _nan(len(x))
    seed = float(np.mean(x[seed_end - period + 1:seed_end + 1]))
    return _recursive(x, 2.0 / (period + 1), seed_end, seed)


@_finite_suffix
def wma(x: np.ndarray, period: int) -> np.ndarray:
    """Linearly weighted moving average (TA-Lib ``WMA``): weights 1..period, newest heaviest.

    O(n) whatever the period, from the blocked sums of :func:`_window_sums` (a running
    ``sum(i * x[i])`` over the whole series grows like n² × price and cancels catastrophically).
    """
    n = len(x)
    if n < period:
        return _nan(n)
    sums = _window_sums(x, period, lambda d, u: u * d)
    column = np.arange(period, dtype=np.float64)
    # Window ending at position r of block k, starting at position j = r + 1 of block k - 1: bar u
    # of block k - 1 (u >= j) weighs u - j + 1, bar u of block k (u <= r) weighs period - r + u.
    head = (period - column) * sums.head[0] + sums.head[1]  # column = r
    tail = sums.tail[1] - (column - 1.0) * sums.tail[0]  # column = j
    whole = sums.whole[1] + sums.whole[0]  # the window is block k itself: bar u weighs u + 1
    weighted = _windows(head, tail, whole, n, np.add)
    return sums.centre + weighted / (period * (period + 1) / 2.0)


@_finite_suffix
def rsi(x: np.ndarray, period: int) -> np.ndarray:
    """Relative strength index (TA-Lib ``RSI``), Wilder smoothing; first value at index ``period``."""
    n = len(x)
    if n <= period:
        return _nan(n)
    change = np.diff(x, prepend=np.nan)
    gain, loss = np.clip(change, 0, None), np.clip(-change, 0, None)
    avg_gain = _recursive(gain, 1.0 / period, period, float(np.mean(gain[1:period + 1])))
    avg_loss = _recursive(loss, 1.0 / period, period, float(np.mean(loss[1:period + 1])))
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(total) < _ZERO, 0.0, 100.0 * avg_gain / total)


@_finite_suffix
def roc(x: np.ndarray, period: int) -> np.ndarray:
    """Rate of change in percent (TA-Lib ``ROC``): ``(x / x[t-period] - 1) * 100``."""
    out = _nan(len(x))
    if len(x) > period:
        prev = x[:-period]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[period:] = np.where(prev != 0, (x[period:] / prev - 1.0) * 100.0, 0.0)
    return out


def _blocks(x: np.ndarray, period: int, fill: float = 0.0) -> np.ndarray:
    """``x`` padded with ``fill`` to whole blocks of ``period`` values, shaped (blocks, period)."""
    count = -(-len(x) // period)
    padded = np.full(count * period, fill)
    padded[:len(x)] = x
    return padded.reshape(count, period)


def _windows(head: np.ndarray, tail: np.ndarray, whole: np.ndarray, n: int,
             combine: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """The value of every window of ``period`` bars (NaN before the first), from per-block parts.

    With blocks of ``period`` bars, the window ending at bar ``t = k * period + r`` is either block
    ``k`` itself (``r = period - 1``: ``whole[k]``) or the end of block ``k - 1`` from position
    ``r + 1`` plus the start of block ``k`` up to ``r``: ``combine(tail[k-1, r+1], head[k, r])``.
    ``head`` and ``tail`` are (blocks, period) arrays (``tail`` indexed by where the window starts
    in its block), ``whole`` has one value per block. Every output depends only on the bars of its
    window's two blocks, none after it, so a prefix of the series gives bit-identical values
    (the live stepper relies on that).
    """
    count, period = head.shape
    grid = np.full((count, period), np.nan)
    grid[1:, :-1] = combine(tail[:-1, 1:], head[1:, :-1])
    grid[:, -1] = whole
    return grid.reshape(-1)[:n]


def _reverse_cumsum(blocks: np.ndarray) -> np.ndarray:
    return np.cumsum(blocks[:, ::-1], axis=1)[:, ::-1]


@dataclass(frozen=True, slots=True)
class _WindowSums:
    """Per-block sums for windowed statistics, each centred on the window's own reference value.

    With ``d = x - c`` and ``u`` a bar's position inside its block, ``head``/``tail``/``whole``
    hold the blocked sums of ``d`` and of ``second(d, u)`` (``u * d`` for the weighted average,
    ``d * d`` for the variance): ``head`` cumulative from a block's start, centred on the previous
    block's first value; ``tail`` cumulative to a block's end, and ``whole`` over a whole block,
    centred on the block's own first value. ``centre`` is, per bar, the reference value of the
    window ending there. So every window's sums are of values centred on a price inside (or just
    before) the window: their size is the window's spread, not the price level, and no running
    total spans the series.
    """

    head: tuple[np.ndarray, np.ndarray]
    tail: tuple[np.ndarray, np.ndarray]
    whole: tuple[np.ndarray, np.ndarray]
    centre: np.ndarray


def _window_sums(x: np.ndarray, period: int,
                 second: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> _WindowSums:
    n = len(x)
    blocks = _blocks(x, period)
    first = blocks[:, 0]  # each block's reference value (known when the block starts: causal)
    own = blocks - first[:, None]
    previous = blocks - np.r_[first[:1], first[:-1]][:, None]
    u = np.arange(period, dtype=np.float64)
    tail = (_reverse_cumsum(own), _reverse_cumsum(second(own, u)))
    head = (np.cumsum(previous, axis=1), np.cumsum(second(previous, u), axis=1))
    centre = np.empty((len(blocks), period))
    centre[1:, :-1] = first[:-1, None]
    centre[0, :-1] = np.nan
    centre[:, -1] = first
    return _WindowSums(head=head, tail=tail, whole=(tail[0][:, 0], tail[1][:, 0]), centre=centre.reshape(-1)[:n])


def _extreme(x: np.ndarray, period: int, ufunc: np.ufunc, fill: float) -> np.ndarray:
    """``ufunc`` (np.maximum / np.minimum) over every window of ``period`` bars: van Herk /
    Gil-Werman, running extremes forward and backward inside blocks of ``period`` bars, so O(n)
    whatever the period (a sliding-window view costs n × period)."""
    if len(x) < period:
        return _nan(len(x))
    blocks = _blocks(x, period, fill)
    head = ufunc.accumulate(blocks, axis=1)
    tail = ufunc.accumulate(blocks[:, ::-1], axis=1)[:, ::-1]
    return _windows(head, tail, head[:, -1], len(x), ufunc)


@_finite_suffix
def highest(x: np.ndarray, period: int) -> np.ndarray:
    """Highest value over the last ``period`` bars, current included (TA-Lib ``MAX``); O(n)."""
    return _extreme(x, period, np.maximum, -np.inf)


@_finite_suffix
def lowest(x: np.ndarray, period: int) -> np.ndarray:
    """Lowest value over the last ``period`` bars, current included (TA-Lib ``MIN``); O(n)."""
    return _extreme(x, period, np.minimum, np.inf)


@_finite_suffix
def stddev(x: np.ndarray, period: int) -> np.ndarray:
    """Population standard deviation over ``period`` bars (TA-Lib ``STDDEV`` with nbdev 1); O(n).

    ``E[d²] - E[d]²`` with ``d = x - c``, ``c`` a price at the start of the window's block
    (:func:`_window_sums`). On raw prices this formula loses every digit (BTC squared is ~1e9 and
    the bands must hold to 1e-6); centred, the terms are as large as the window's spread, so the
    relative error of the variance stays near ``period × 1e-16 × (spread / deviation)²``.
    """
    n = len(x)
    if n < period:
        return _nan(n)
    sums = _window_sums(x, period, lambda d, _: d * d)
    mean = _windows(sums.head[0], sums.tail[0], sums.whole[0], n, np.add) / period
    square = _windows(sums.head[1], sums.tail[1], sums.whole[1], n, np.add) / period
    return np.sqrt(np.maximum(square - mean * mean, 0.0))


def bollinger(x: np.ndarray, period: int, deviations: float) -> dict[str, np.ndarray]:
    """Bollinger bands (TA-Lib ``BBANDS`` with SMA): ``upper``, ``middle``, ``lower``."""
    middle = sma(x, period)
    width = deviations * stddev(x, period)
    return {"upper": middle + width, "middle": middle, "lower": middle - width}


def macd(x: np.ndarray, fast: int, slow: int, signal: int) -> dict[str, np.ndarray]:
    """MACD (TA-Lib ``MACD``): ``macd``, ``signal``, ``histogram``; first value at slow+signal-2."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    start = int(np.argmax(finite)) if finite.any() else len(x)
    out = {name: _nan(len(x)) for name in ("macd", "signal", "histogram")}
    x = x[start:]
    if slow < fast:
        fast, slow = slow, fast
    first = slow - 1 + signal - 1
    if len(x) <= first:
        return out
    # both EMAs start at the slow EMA's seed index, as in TA_INT_MACD
    line = _ema_from(x, slow, slow - 1)
    line = _ema_from(x, fast, slow - 1) - line
    sig = _nan(len(x))
    sig[slow - 1:] = _ema_from(line[slow - 1:], signal, signal - 1)
    for name, values in (("macd", line), ("signal", sig), ("histogram", line - sig)):
        out[name][start + first:] = values[first:]
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """TA-Lib ``TRANGE``: max(high-low, |high-prev close|, |low-prev close|); NaN at index 0."""
    prev = np.r_[np.nan, close[:-1]]
    tr: np.ndarray = np.maximum(high - low, np.maximum(np.abs(high - prev), np.abs(low - prev)))
    tr[0] = np.nan
    return tr


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """Average true range (TA-Lib ``ATR``), Wilder smoothing; first value at index ``period``."""
    tr = true_range(high, low, close)
    if period == 1:
        return tr
    if len(tr) <= period:
        return _nan(len(tr))
    return _recursive(tr, 1.0 / period, period, float(np.mean(tr[1:period + 1])))


def stochastic(high: np.ndarray, low: np.ndarray, close: np.ndarray, k_period: int, k_smooth: int,
               d_period: int) -> dict[str, np.ndarray]:
    """Slow stochastic (TA-Lib ``STOCH`` with SMA smoothing): ``k`` and ``d``.

    fast %K = 100 * (close - lowest low) / (highest high - lowest low) over ``k_period`` bars
    (0 when the range is 0); ``k`` = SMA(fast %K, k_smooth); ``d`` = SMA(k, d_period). Both are NaN
    until ``d`` exists, as in TA-Lib.
    """
    n = len(close)
    out = {"k": _nan(n), "d": _nan(n)}
    first = (k_period - 1) + (k_smooth - 1) + (d_period - 1)
    if n <= first:
        return out
    hh, ll = highest(high, k_period), lowest(low, k_period)
    span = hh - ll
    with np.errstate(invalid="ignore", divide="ignore"):
        fast_k = np.where(span != 0, (close - ll) / span * 100.0, 0.0)
    fast_k[:k_period - 1] = np.nan
    slow_k = sma(fast_k, k_smooth)
    slow_d = sma(slow_k, d_period)
    out["k"][first:], out["d"][first:] = slow_k[first:], slow_d[first:]
    return out


def obv(price: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """On-balance volume (TA-Lib ``OBV``): starts at volume[0], adds/subtracts on up/down closes."""
    step = np.sign(np.diff(price)) * volume[1:]
    return np.cumsum(np.r_[volume[:1], step])


def vwap(price: np.ndarray, volume: np.ndarray, period: int) -> np.ndarray:
    """Rolling volume-weighted average price over ``period`` bars (TA-Lib has none).

    ``sum(price * volume) / sum(volume)`` over the window; the last price when the window's volume
    is 0. First value at index ``period - 1``.
    """
    pv, v = _rolling_sum(price * volume, period), _rolling_sum(volume, period)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(v > 0, pv / v, np.where(np.isnan(v), np.nan, price))


def convergence_bars(alpha: float, tolerance: float = 1e-12) -> int:
    """Bars after which a seed's weight ``(1 - alpha) ** m`` falls below ``tolerance``."""
    if alpha >= 1.0:
        return 0
    return math.ceil(math.log(tolerance) / math.log(1.0 - alpha))
