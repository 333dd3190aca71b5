"""Every indicator equals TA-Lib's function of the same name within 1e-6 relative, NaN before."""

from __future__ import annotations

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
