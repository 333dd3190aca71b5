"""Put candles straight into the candle store, as if they had been fetched before (a warm cache)."""

from __future__ import annotations

import numpy as np

from capandex.engine import Candles
from capandex.marketdata.chunks import Chunk, chunk_key, chunk_span_ms, chunk_starts, encode


def cache_candles(exchange: str, symbol: str, timeframe: str, candles: Candles) -> None:
    """Store ``candles`` (aligned to ``timeframe``) as complete chunks of the current settings' store."""
    from capandex.marketdata import get_store

    store, span = get_store(), chunk_span_ms(timeframe)
    for start in chunk_starts(timeframe, int(candles.time[0]), int(candles.time[-1]) + 1):
        inside = (candles.time >= start) & (candles.time < start + span)
        arrays = [np.asarray(getattr(candles, name))[inside] for name in ("time", "open", "high", "low", "close",
                                                                          "volume")]
        chunk = Chunk(start, start + span, start + span, *arrays)
        store.put(chunk_key(exchange, symbol, timeframe, start), encode(chunk))
