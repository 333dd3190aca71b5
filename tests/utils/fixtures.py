"""Shared pytest fixtures for exchange-facing tests (import them into a conftest.py):

    from tests.utils.fixtures import binance, binance_env  # noqa: F401

- ``binance``: a running :class:`~tests.utils.binance_server.BinanceServer` (stopped afterwards).
- ``binance_env``: settings pointed at it (``CAPANDEX_EXCHANGE_URLS``, a short exchange timeout),
  a fresh data dir, and every per-container cache of capandex.exchanges cleared; returns the server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.utils.binance_server import BinanceServer


@pytest.fixture
def binance() -> Iterator[BinanceServer]:
    with BinanceServer() as server:
        yield server


def reset_exchange_caches() -> None:
    from capandex.exchanges import clear_clients
    from capandex.exchanges.market import clear_caches
    from capandex.exchanges.registry import clear_cache

    clear_clients()
    clear_caches()
    clear_cache()


@pytest.fixture
def binance_env(binance: BinanceServer, configure) -> Iterator[BinanceServer]:
    configure(CAPANDEX_EXCHANGE_URLS=binance.exchange_urls_env(), CAPANDEX_EXCHANGE_TIMEOUT_MS="1000",
              CAPANDEX_EXCHANGE_SANDBOX=None)
    reset_exchange_caches()
    yield binance
    reset_exchange_caches()
