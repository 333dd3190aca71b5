"""The exchange-neutral side of the loopback order endpoints: accounts, market orders filled at a
set price, one-shot faults. Each exchange module (``binance_orders``, ``okx_orders``,
``bybit_orders``) subclasses :class:`OrderBook`, serves its own endpoints in its wire format and
renders the faults the way that exchange answers them.

Faults (one-shot, consumed in order by the next order placement; ``lookup_miss`` by the next lookup)::

    book.fail_next("accept_then_timeout")   # the order IS placed, the answer comes too late
    book.fail_next("server_error")          # 503 before anything happens
    book.fail_next("insufficient_balance")  # the exchange's "insufficient balance" answer
    book.fail_next("delisted")              # the exchange's "unknown symbol" answer
    book.fail_next("partial_fill")          # fills half, then the market order ends (out of liquidity)
    book.fail_next("lookup_miss")           # the next lookup does not see the order yet
    book.fail_next("rate_limited")          # the exchange's rate-limit answer (Binance 429)
    book.fail_next("ip_banned")             # the exchange's "stop, or be banned" answer (Binance 418)

By default a reused client id is refused as a duplicate only while the earlier order is still
open, as on Binance — a filled market order's id is accepted again, the worst case for
exactly-once, so :attr:`OrderBook.placed` shows any second placement; with
``reuse_filled_ids=False`` every reuse is refused.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.utils.loopback_exchange import Handler, LoopbackExchange, Request, Response

#: the default test key pair (and OKX passphrase) the books accept
API_KEY, SECRET, PASSPHRASE = "test-key", "test-secret", "test-pass"

PLACEMENT_FAULTS = ("accept_then_timeout", "server_error", "insufficient_balance", "delisted", "partial_fill",
                    "rate_limited", "ip_banned")


@dataclass
class BookOrder:
    """One accepted market order: ``requested``/``filled`` in base units, ``cost`` in quote, ``fee``
    in ``fee_asset``; ``status`` is ``filled`` or ``expired`` (ended after a partial fill)."""

    client_id: str
    order_id: str
    symbol: str
    side: str
    requested: float
    filled: float
    price: float
    cost: float
    fee: float
    fee_asset: str
    status: str
    time_ms: int

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1]


@dataclass
class OrderBook:
    """Accounts and orders of a loopback exchange; see the module docstring.

    ``prices`` maps unified symbols (``BTC/USDT``) to the fill price; ``commission`` is charged
    in the quote asset, or in the bought asset with ``fee_in_base`` (OKX and Bybit charge buys so).
    """

    server: LoopbackExchange
    prices: dict[str, float] = field(default_factory=lambda: {"BTC/USDT": 40_000.0, "ETH/USDT": 2_500.0})
    balances: dict[str, float] = field(default_factory=lambda: {"USDT": 1_000_000.0, "BTC": 0.0, "ETH": 0.0})
    commission: float = 0.001
    fee_in_base: bool = False
    late_seconds: float = 1.5
    reuse_filled_ids: bool = True
    api_key: str = API_KEY
    secret: str = SECRET
    passphrase: str = PASSPHRASE

    def __post_init__(self) -> None:
        self.orders: dict[str, BookOrder] = {}
        self.placed: list[str] = []  # client ids in acceptance order (a duplicate would show twice)
        self.faults: deque[str] = deque()
        self.verified: list[str] = []  # paths of the signed requests whose signature checked out
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()

    @classmethod
    def install(cls, server: LoopbackExchange, **kwargs: Any) -> Any:
        book = cls(server, **kwargs)
        book.serve()
        return book

    def serve(self) -> None:
        """Register the exchange's order and account routes on :attr:`server` (through :meth:`signed`)."""
        raise NotImplementedError

    def refuse_unsigned(self, request: Request) -> Response | None:
        """The exchange's answer to a request not signed with :attr:`api_key`/:attr:`secret`, or None."""
        raise NotImplementedError

    def signed(self, handler: Handler) -> Handler:
        """``handler`` behind the exchange's signature check; :attr:`verified` logs what passed."""
        def serve(request: Request) -> Response:
            refused = self.refuse_unsigned(request)
            if refused is not None:
                return refused
            self.verified.append(request.path)
            return handler(request)
        return serve

    def fail_next(self, kind: str, times: int = 1) -> None:
        self.faults.extend([kind] * times)

    # -- what the routes call --------------------------------------------------------------------
    def placement_fault(self) -> str | None:
        """The fault for this placement, if the next one is a placement fault."""
        with self._lock:
            if self.faults and self.faults[0] in PLACEMENT_FAULTS:
                return self.faults.popleft()
        return None

    def lookup_misses(self) -> bool:
        with self._lock:
            if self.faults and self.faults[0] == "lookup_miss":
                self.faults.popleft()
                return True
        return False

    def place(self, client_id: str, symbol: str, side: str, quantity: float, *, partial: bool = False
              ) -> BookOrder | str:
        """Fill a market order, or say why not: ``duplicate`` or ``insufficient_balance``."""
        with self._lock:
            previous = self.orders.get(client_id)
            if previous is not None and (previous.status == "open" or not self.reuse_filled_ids):
                return "duplicate"
            base, quote = symbol.split("/")
            price = self.prices[symbol]
            filled = quantity / 2 if partial else quantity
            cost = filled * price
            if (side == "buy" and self.balances.get(quote, 0.0) < cost) or \
                    (side == "sell" and self.balances.get(base, 0.0) < filled - 1e-12):
                return "insufficient_balance"
            if side == "buy":
                fee, fee_asset = (filled * self.commission, base) if self.fee_in_base else (cost * self.commission,
                                                                                             quote)
                self.balances[quote] -= cost + (fee if fee_asset == quote else 0.0)
                self.balances[base] = self.balances.get(base, 0.0) + filled - (fee if fee_asset == base else 0.0)
            else:
                fee, fee_asset = cost * self.commission, quote
                self.balances[base] -= filled
                self.balances[quote] = self.balances.get(quote, 0.0) + cost - fee
            order = BookOrder(client_id, str(next(self._ids)), symbol, side, quantity, filled, price, cost, fee,
                              fee_asset, "expired" if partial else "filled", self.server.now())
            self.orders[client_id] = order
            self.placed.append(client_id)
            return order

    def after_accepting(self, fault: str | None) -> None:
        """Hold the answer past the client's timeout for ``accept_then_timeout``."""
        if fault == "accept_then_timeout":
            time.sleep(self.late_seconds)

    def find(self, client_id: str | None = None, order_id: str | None = None) -> BookOrder | None:
        with self._lock:
            if client_id:
                return self.orders.get(client_id)
            return next((o for o in self.orders.values() if o.order_id == order_id), None)

    def balance_rows(self) -> list[tuple[str, float]]:
        with self._lock:
            return sorted(self.balances.items())
