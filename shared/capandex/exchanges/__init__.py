"""Exchanges through ccxt: the only package that imports ccxt (lazily).

Public API::

    from capandex.exchanges import Credentials, ExchangeClient, get_client, retrier

    client = get_client("binance")                      # one per (exchange, keys, sandbox) per container
    client.symbols(); client.ticker("BTC/USDT")         # reads, retried on temporary failures
    client.ohlcv_page("BTC/USDT", "1m", since_ms, client.max_page_size("1m"))
    get_client("binance", Credentials(key, secret)).fetch_balance()

    trader = get_client("okx", Credentials(key, secret, passphrase))
    trader.fetch_order_by_client_id("BTC/USDT", cid)    # an ExchangeOrder, or None; retried
    trader.create_market_order("BTC/USDT", "buy", 0.01, cid)   # never retried

Every ccxt error surfaces as a :mod:`capandex.errors` class (see :mod:`capandex.exchanges.errors`;
order refusals as its order classes: ``InsufficientBalance``, ``SymbolNotTradable``,
``DuplicateClientOrderId`` …). Each exchange's client-order-id parameters are data in
:mod:`capandex.exchanges.orders`.
"""

from capandex.exchanges.client import ExchangeClient, clear_clients, get_client, rebase_urls
from capandex.exchanges.credentials import Credentials
from capandex.exchanges.errors import ccxt_errors
from capandex.exchanges.orders import ExchangeOrder, OrderFee
from capandex.exchanges.retry import retrier

__all__ = ["Credentials", "ExchangeClient", "ExchangeOrder", "OrderFee", "ccxt_errors", "clear_clients", "get_client",
           "rebase_urls", "retrier"]
