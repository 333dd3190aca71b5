"""Historical candles through a chunk store (S3 in AWS, a local directory otherwise).

Public API::

    from capandex.marketdata import fetch_candles, progress_bar
    candles = fetch_candles("binance", "BTC/USDT", "1m", start_ms, end_ms, progress=bar)
    candles.gaps            # (Gap(start_ms, end_ms, missing), ...) the exchange has no data there
    candles.pages_fetched   # 0 when every chunk came from the store

``candles`` is a :class:`capandex.engine.candles.Candles` (a :class:`FetchedCandles`), ready for
:func:`capandex.engine.backtest`. The lower-level steps over a :class:`CandleRange` (:func:`plan`,
:func:`load`, :func:`ensure_chunk`) are what the backtest core (:mod:`capandex.backtests.core`)
runs, in the request and as Step Functions tasks.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name → the submodule defining it. Resolved on first access (PEP 562), so importing
#: ``capandex.marketdata.chunks`` (timeframes) does not pull in numpy and the engine at cold start.
_EXPORTS = {
    **dict.fromkeys(("CandleRange", "ChunkPlan", "FetchedCandles", "Gap", "assemble", "ensure_chunk",
                     "fetch_candles", "fill_chunk", "find_gaps", "load", "plan", "plan_chunk"), "candles"),
    **dict.fromkeys(("CHUNK_CANDLES", "TIMEFRAME_MS", "timeframe_ms"), "chunks"),
    **dict.fromkeys(("ProgressBar", "progress_bar"), "progress"),
    **dict.fromkeys(("BlobStore", "LocalStore", "S3Store", "get_store"), "store"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'capandex.marketdata' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"capandex.marketdata.{module}"), name)
    globals()[name] = value
    return value
