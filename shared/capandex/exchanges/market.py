"""Market data for the API: symbol lists and tickers behind short time-to-live caches.

Markets change rarely (listings), tickers every second; a dashboard polls both. The caches are
per container and keyed by client, so a client built for a different base URL or sandbox never
sees another's data.
"""

from __future__ import annotations

from typing import Any

from capandex.exchanges.client import ExchangeClient, get_client
from capandex.ttlcache import TTLCache

#: seconds a symbol list is served before the markets are fetched again
SYMBOLS_TTL_S = 300.0
#: seconds a ticker is served from cache (a dashboard polling every second costs 1 call per 5 s)
TICKER_TTL_S = 5.0

_symbols = TTLCache(SYMBOLS_TTL_S, max_items=64)
_tickers = TTLCache(TICKER_TTL_S, max_items=4096)


def list_symbols(exchange_id: str) -> list[str]:
    """Active spot symbols of an exchange (cached for :data:`SYMBOLS_TTL_S`)."""
    client = get_client(exchange_id)
    return _symbols.get_or_set(client, lambda: _fresh_symbols(client))


def _fresh_symbols(client: ExchangeClient) -> list[str]:
    if client.ccxt.markets:  # loaded before and the cache expired: fetch the listings again
        client.reload_markets()
    return client.symbols()


def get_ticker(exchange_id: str, symbol: str) -> dict[str, Any]:
    """The reference's ticker for ``symbol`` (cached for :data:`TICKER_TTL_S`)."""
    client = get_client(exchange_id)
    return _tickers.get_or_set((client, symbol), lambda: client.ticker(symbol))


def clear_caches() -> None:
    """Forget cached symbols and tickers (tests)."""
    _symbols.clear()
    _tickers.clear()
