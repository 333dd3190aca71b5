"""Range extremes of a candle series in O(1) per query, for simulating many runs over one series.

:class:`RangeExtremes` holds sparse tables of the lows' minima and the highs' maxima over every
power-of-two window (O(n log n) memory, built once). :meth:`RangeExtremes.first_reaching` then
finds, for many bar ranges at once, the first bar whose low or high reaches a threshold by binary
lifting — log2(n) vectorised steps instead of a pass over every bar. Comparisons are the plain
``<=``/``>=`` of the thresholds, so the answer is exact (no float arithmetic on prices here).

Building the tables costs ~2·log2(n) passes over the series, more than one backtest saves: the
simulator uses them only when a caller (parameter research) passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capandex.engine.candles import Candles


@dataclass(frozen=True, slots=True)
class RangeExtremes:
    """``low_min[k][i]`` = min(low[i : i + 2**k]); ``high_max[k][i]`` = max(high[i : i + 2**k])."""

    low_min: tuple[np.ndarray, ...]
    high_max: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, candles: Candles) -> RangeExtremes:
        lows, highs = [candles.low], [candles.high]
        size = 1
        while 2 * size <= len(candles):
            lows.append(np.minimum(lows[-1][:-size], lows[-1][size:]))
            highs.append(np.maximum(highs[-1][:-size], highs[-1][size:]))
            size *= 2
        return cls(tuple(lows), tuple(highs))

    def first_reaching(self, first: np.ndarray, last: np.ndarray, low_at_most: np.ndarray,
                       high_at_least: np.ndarray) -> np.ndarray:
        """Per range ``first..last`` (inclusive), the first bar with ``low <= low_at_most`` or
        ``high >= high_at_least``; ``last + 1`` where no bar does."""
        position = first.astype(np.int64, copy=True)
        longest = int((last - first).max()) + 1 if len(first) else 0
        for k in reversed(range(min(len(self.low_min), longest.bit_length()))):  # no step longer than a range
            size = 1 << k
            lows, highs = self.low_min[k], self.high_max[k]
            fits = position + size - 1 <= last
            at = np.minimum(position, len(lows) - 1)  # in bounds; masked by ``fits`` anyway
            clear = fits & (lows[at] > low_at_most) & (highs[at] < high_at_least)
            position += np.where(clear, size, 0)
        return position
