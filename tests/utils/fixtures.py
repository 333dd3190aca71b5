"""Shared pytest fixtures for exchange-facing tests: a suite-wide plugin (``pytest_plugins`` in
tests/conftest.py), so every test may name them without an import.

- ``binance``: a running :class:`~tests.utils.binance_server.BinanceServer` (stopped afterwards).
- ``binance_env``: settings pointed at it (``CAPANDEX_EXCHANGE_URLS``, a short exchange timeout),
  a fresh data dir, and every per-container cache of capandex.exchanges cleared; returns the server.
- :func:`with_flow`: an API user with a flow saved (``client.flow_id``).
- ``instant_retries``: exchange reads retry without waiting (:mod:`capandex.exchanges.retry`'s
  back-off sleeps are skipped; the attempts are the same).
- :func:`open_venue` (a context manager, for fixtures parametrised over :data:`VENUES`): one of
  the exchanges live mode trades on, with its order endpoints, as a :class:`Venue`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tests.utils.binance_server import BinanceServer
from tests.utils.loopback_exchange import LoopbackExchange
from tests.utils.order_book import API_KEY, PASSPHRASE, SECRET, OrderBook

if TYPE_CHECKING:
    from capandex.exchanges import Credentials, ExchangeClient


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


def with_flow(client: Any, document: dict[str, Any], name: str = "SMA") -> Any:
    """``client`` (an API user) with ``document`` saved as a flow of its own: ``client.flow_id``."""
    response = client.post("/api/flows", json={"name": name, **document})
    assert response.status_code == 201, response.text
    client.flow_id = response.json()["id"]
    return client


@pytest.fixture
def instant_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from capandex.exchanges import retry

    monkeypatch.setattr(retry, "sleep", lambda _s: None)


# -- exchanges with order endpoints: one fixture, parametrised over every exchange live mode trades on
@dataclass
class Venue:
    """A loopback exchange with order endpoints, and the settings pointed at it.

    ``id`` is the exchange (and ccxt) id; ``book`` the exchange-neutral order book
    (:class:`tests.utils.order_book.OrderBook`); ``credentials`` the key pair it accepts.
    """

    id: str
    server: LoopbackExchange
    book: Any
    credentials: Credentials

    def client(self) -> ExchangeClient:
        """The container's client for this venue's key, without ccxt's own request spacing (tens of
        ms per request, seconds per test; the loopback has no limit, and Capandex's per-key budget
        is what the rate-limit tests exercise)."""
        from capandex.exchanges import get_client

        client = get_client(self.id, self.credentials)
        client.ccxt.enableRateLimit = False
        return client


def _venue_types() -> dict[str, tuple[type[LoopbackExchange], type[OrderBook]]]:
    from tests.utils.binance_orders import BinanceOrders
    from tests.utils.bybit_orders import BybitOrders
    from tests.utils.bybit_server import BybitServer
    from tests.utils.okx_orders import OkxOrders
    from tests.utils.okx_server import OkxServer

    return {"binance": (BinanceServer, BinanceOrders), "okx": (OkxServer, OkxOrders),
            "bybit": (BybitServer, BybitOrders)}


#: the exchanges live mode places orders on (each with a client-order-id lookup)
VENUES = ("binance", "okx", "bybit")


@contextmanager
def open_venue(exchange_id: str, configure: Callable[..., Any], **book: Any) -> Iterator[Venue]:
    """Start ``exchange_id``'s loopback server with its order book (``book`` keyword arguments),
    point the settings at it and clear the per-container exchange caches."""
    from capandex.exchanges import Credentials

    server_type, book_type = _venue_types()[exchange_id]
    with server_type() as server:
        configure(CAPANDEX_EXCHANGE_URLS=server.exchange_urls_env(), CAPANDEX_EXCHANGE_TIMEOUT_MS="1000",
                  CAPANDEX_EXCHANGE_SANDBOX=None)
        reset_exchange_caches()
        orders = book_type.install(server, **book)
        try:
            yield Venue(exchange_id, server, orders, Credentials(API_KEY, SECRET, PASSPHRASE))
        finally:
            reset_exchange_caches()
