"""Which candle has closed at a given time (timeframes themselves: :data:`capandex.marketdata.chunks.TIMEFRAME_MS`,
the ones market data serves — a flow runs only on those)."""

from __future__ import annotations


def last_closed_open(now_ms: int, tf_ms: int) -> int:
    """Open time (epoch ms) of the newest candle that has fully closed at ``now_ms``.

    A candle opening at ``o`` closes at ``o + tf``; at exactly ``o + tf`` it counts as closed.
    """
    return (now_ms // tf_ms) * tf_ms - tf_ms
