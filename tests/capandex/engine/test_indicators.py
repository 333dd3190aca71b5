"""Every indicator equals TA-Lib's function of the same name within 1e-6 relative, NaN before."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

talib = pytest.importorskip("talib")

from capandex.engine import indicators as ta  # noqa: E402
from tests.capandex.engine.factories import random_walk  # noqa: E402

C = random_walk(600, seed=3)


def same(ours: np.ndarray, theirs: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    ok = ~np.isnan(theirs)
    np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("period", [2, 5, 14, 30])
@pytest.mark.parametrize("name", ["sma", "ema", "wma", "rsi", "roc"])
def test_single_input(name, period):
    same(getattr(ta, name)(C.close, period), getattr(talib, name.upper())(C.close, timeperiod=period))


@pytest.mark.parametrize("period", [2, 7, 20])
def test_highest_lowest(period):
    same(ta.highest(C.close, period), talib.MAX(C.close, timeperiod=period))
    same(ta.lowest(C.close, period), talib.MIN(C.close, timeperiod=period))


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 10, 1)])
def test_macd(fast, slow, signal):
    ours = ta.macd(C.close, fast, slow, signal)
    macd, sig, hist = talib.MACD(C.close, fastperiod=fast, slowperiod=slow, signalperiod=signal)
    same(ours["macd"], macd)
    same(ours["signal"], sig)
    same(ours["histogram"], hist)


@pytest.mark.parametrize(("period", "dev"), [(20, 2.0), (5, 1.5)])
def test_bollinger(period, dev):
    ours = ta.bollinger(C.close, period, dev)
    upper, middle, lower = talib.BBANDS(C.close, timeperiod=period, nbdevup=dev, nbdevdn=dev, matype=0)
    same(ours["upper"], upper)
    same(ours["middle"], middle)
    same(ours["lower"], lower)


@pytest.mark.parametrize("period", [1, 2, 14])
def test_atr(period):
    same(ta.atr(C.high, C.low, C.close, period), talib.ATR(C.high, C.low, C.close, timeperiod=period))


@pytest.mark.parametrize(("k", "ks", "d"), [(14, 3, 3), (5, 1, 1), (9, 2, 4)])
def test_stochastic(k, ks, d):
    ours = ta.stochastic(C.high, C.low, C.close, k, ks, d)
    slowk, slowd = talib.STOCH(C.high, C.low, C.close, fastk_period=k, slowk_period=ks, slowk_matype=0,
                               slowd_period=d, slowd_matype=0)
    same(ours["k"], slowk)
    same(ours["d"], slowd)


def test_obv():
    same(ta.obv(C.close, C.volume), talib.OBV(C.close, C.volume))


def test_indicator_of_an_indicator_skips_the_leading_nans():
    inner = talib.RSI(C.close, timeperiod=14)
    same(ta.sma(ta.rsi(C.close, 14), 5), talib.SMA(inner, timeperiod=5))
    same(ta.ema(ta.rsi(C.close, 14), 9), talib.EMA(inner, timeperiod=9))


def test_vwap_is_the_rolling_volume_weighted_price():
    price = (C.high + C.low + C.close) / 3
    ours = ta.vwap(price, C.volume, 10)
    i = 50
    expected = (price[i - 9:i + 1] * C.volume[i - 9:i + 1]).sum() / C.volume[i - 9:i + 1].sum()
    assert ours[i] == pytest.approx(expected, rel=1e-12)
    assert np.isnan(ours[:9]).all() and not np.isnan(ours[9:]).any()


def test_large_prices_keep_bollinger_exact():
    big = random_walk(3000, seed=9).close * 600.0  # BTC-sized prices
    same(ta.stddev(big, 20), talib.STDDEV(big, timeperiod=20, nbdev=1))
    same(ta.ema(big, 200), talib.EMA(big, timeperiod=200))


def btc_like(n: int, seed: int = 1) -> np.ndarray:
    """Minute closes of a BTC-like market: ~40,000 quote, cent ticks, a random walk that drifts
    tens of percent over a million bars (so no window is centred near the series' mean)."""
    rng = np.random.default_rng(seed)
    return np.round(40_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n))), 2)


BTC = btc_like(30_000)


@pytest.mark.parametrize("period", [200, 5_000, 20_000])
@pytest.mark.parametrize("name, talib_name", [("sma", "SMA"), ("ema", "EMA"), ("wma", "WMA"), ("rsi", "RSI"),
                                              ("highest", "MAX"), ("lowest", "MIN"), ("roc", "ROC")])
def test_long_periods_on_btc_prices(name, talib_name, period):
    same(getattr(ta, name)(BTC, period), getattr(talib, talib_name)(BTC, timeperiod=period))


@pytest.mark.parametrize("period", [2, 200, 20_000])
def test_long_bollinger_on_btc_prices(period):
    same(ta.stddev(BTC, period), talib.STDDEV(BTC, timeperiod=period, nbdev=1))
    upper, _, lower = talib.BBANDS(BTC, timeperiod=period, nbdevup=2, nbdevdn=2, matype=0)
    ours = ta.bollinger(BTC, period, 2.0)
    same(ours["upper"], upper)
    same(ours["lower"], lower)


def exact_std(window: np.ndarray) -> float:
    """Two-pass population deviation with correctly rounded sums (math.fsum)."""
    mean = math.fsum(window.tolist()) / len(window)
    return math.sqrt(math.fsum(((window - mean) ** 2).tolist()) / len(window))


def exact_wma(window: np.ndarray) -> float:
    weights = np.arange(1, len(window) + 1, dtype=np.float64)  # products of a cent price and an int: exact
    return math.fsum((weights * window).tolist()) / (len(window) * (len(window) + 1) / 2)


@pytest.mark.parametrize("period", [2, 20, 1_000, 20_000, 100_000])
def test_error_bound_on_a_million_btc_candles(period):
    """No catastrophic cancellation on long series (running sums of x² or of i·x over 10^6 BTC bars
    would lose every digit): windows sampled across the series, block edges included, agree with
    exactly rounded references to 1e-9 relative (measured: ≤ 2e-11 for the deviation, ≤ 1e-14 for
    WMA), and the highest/lowest are exact."""
    x = btc_like(1_000_000)
    deviation, weighted, high, low = (ta.stddev(x, period), ta.wma(x, period), ta.highest(x, period),
                                      ta.lowest(x, period))
    ends = np.r_[np.linspace(period - 1, len(x) - 1, 60).astype(int), 2 * period - 2, 2 * period - 1, 3 * period - 1]
    for end in ends[ends < len(x)]:
        window = x[end - period + 1:end + 1]
        reference = exact_std(window)
        assert abs(deviation[end] - reference) <= 1e-9 * reference + 1e-12, (end, deviation[end], reference)
        assert weighted[end] == pytest.approx(exact_wma(window), rel=1e-12)
        assert high[end] == window.max() and low[end] == window.min()
    assert np.isnan(deviation[:period - 1]).all() and not np.isnan(deviation[period - 1:]).any()


@pytest.mark.parametrize("name", ["sma", "wma", "stddev", "highest", "lowest", "vwap"])
@pytest.mark.parametrize("period", [3, 7])
def test_windowed_values_depend_only_on_their_past(name, period):
    """Bit-identical on every prefix (block edges included): the live stepper passes the candles
    since a fixed anchor and must see the backtest's numbers exactly."""
    x = BTC[:60]
    full = ta.vwap(x, C.volume[:60], period) if name == "vwap" else getattr(ta, name)(x, period)
    for end in range(1, 61):
        part = ta.vwap(x[:end], C.volume[:end], period) if name == "vwap" else getattr(ta, name)(x[:end], period)
        np.testing.assert_array_equal(part, full[:end])


@pytest.mark.parametrize("name", ["sma", "ema", "wma", "rsi", "roc", "highest", "lowest", "stddev"])
def test_a_period_longer_than_the_series_is_all_warm_up(name):
    """No array sized by the period: 100,000-bar windows over 50 bars cost 50 values."""
    tracemalloc.start()
    try:
        out = getattr(ta, name)(C.close[:50], 100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(out) == 50 and np.isnan(out).all()
    assert peak < 64_000  # a few arrays of 50 floats, not 100,000
