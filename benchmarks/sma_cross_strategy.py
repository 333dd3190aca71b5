"""backtesting.py's side of ``optimize_vs_peers.py``: the SMA cross strategy as a module-level class
(``Backtest.optimize`` pickles it into its process pool; a class defined inside a function cannot be).

Its stop is set from the signal bar's close: backtesting.py places the order before the fill price is
known (Capandex and vectorbt set it from the fill).
"""

from __future__ import annotations

from backtesting import Strategy
from backtesting.lib import crossover
from backtesting.test import SMA

STOP = 0.02


class SmaCross(Strategy):
    fast, slow = 10, 30

    def init(self) -> None:
        self.fast_ma = self.I(SMA, self.data.Close, self.fast)
        self.slow_ma = self.I(SMA, self.data.Close, self.slow)

    def next(self) -> None:
        if crossover(self.fast_ma, self.slow_ma) and not self.position:
            self.buy(sl=self.data.Close[-1] * (1 - STOP))
        elif crossover(self.slow_ma, self.fast_ma) and self.position:
            self.position.close()
