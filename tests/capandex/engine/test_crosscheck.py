"""Cross-check against backtesting.py on the data it ships: same entries and exits, same prices."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

backtesting = pytest.importorskip("backtesting")
from backtesting import Backtest, Strategy  # noqa: E402
from backtesting.lib import crossover  # noqa: E402
from backtesting.test import EURUSD, GOOG, SMA  # noqa: E402

from capandex.engine import backtest  # noqa: E402
from tests.capandex.engine.factories import sma_cross_flow  # noqa: E402


class SmaCross(Strategy):
    def init(self):
        self.fast = self.I(SMA, self.data.Close, 10)
        self.slow = self.I(SMA, self.data.Close, 30)

    def next(self):
        if crossover(self.fast, self.slow) and not self.position:
            self.buy()
        elif crossover(self.slow, self.fast) and self.position:
            self.position.close()


@pytest.mark.parametrize("data", [GOOG, EURUSD], ids=["GOOG", "EURUSD"])
def test_sma_cross_matches_backtesting_py(data: pd.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(data, SmaCross, cash=1e9, commission=0, finalize_trades=True).run()
    theirs = stats._trades.sort_values("EntryTime")
    ours = backtest(sma_cross_flow(), data, fee=0, slippage=0)
    assert len(ours.trades) == len(theirs) > 10
    entry_times = pd.to_datetime([t["entryTime"] for t in ours.trades]).tz_localize(None)
    exit_times = pd.to_datetime([t["exitTime"] for t in ours.trades]).tz_localize(None)
    np.testing.assert_array_equal(entry_times, theirs["EntryTime"].to_numpy())
    np.testing.assert_allclose([t["entryPrice"] for t in ours.trades], theirs["EntryPrice"], rtol=1e-12)
    # every exit but a still-open last one: same bar, same open price
    closed = [t["exitReason"] == "signal" for t in ours.trades]
    np.testing.assert_array_equal(exit_times[closed], theirs["ExitTime"].to_numpy()[closed])
    np.testing.assert_allclose(np.array([t["exitPrice"] for t in ours.trades])[closed],
                               theirs["ExitPrice"].to_numpy()[closed], rtol=1e-12)
    if not closed[-1]:  # §5 closes at the last close; backtesting.py finalizes on the last bar too
        assert ours.trades[-1]["exitReason"] == "end_of_data"
        assert ours.trades[-1]["exitPrice"] == pytest.approx(data.Close.iloc[-1], rel=1e-12)
        assert theirs["ExitTime"].iloc[-1] == data.index[-1]
