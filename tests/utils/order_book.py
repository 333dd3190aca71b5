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

Stop-loss sells (:meth:`OrderBook.place_stop`) rest until the price set with
:meth:`OrderBook.move_price` falls to their trigger; then a market stop sells at that price and a
stop-limit becomes a limit sell (filled when the price is at or above its limit). Where the
exchange reserves a resting stop's coins (``lock_stops``: Binance, Bybit's TP/SL orders) they are
not free until it fills or is cancelled. The one-shot fault ``fill_before_cancel`` makes the next
cancel find the stop already triggered and filled at its level (the race of moving a stop).

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
    """One accepted order: ``requested``/``filled`` in base units, ``cost`` in quote, ``fee`` in
    ``fee_asset``; ``status`` is ``filled``, ``expired`` (ended after a partial fill), ``open`` (a
    stop waiting, or triggered as a limit not yet filled) or ``canceled``. A stop (``kind``
    ``stop``) has its ``trigger`` and, as a stop-limit, its ``limit``; ``child_id`` is the client
    key of the order a triggered stop placed (OKX's algo orders), ``time_ms`` when it last changed."""

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
    kind: str = "market"
    trigger: float | None = None
    limit: float | None = None
    triggered: bool = False
    child_id: str | None = None

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
    lock_stops: bool = True
    #: a triggered stop fills through a separate order (OKX's algo orders) instead of itself
    stop_child_orders: bool = False
    api_key: str = API_KEY
    secret: str = SECRET
    passphrase: str = PASSPHRASE

    def __post_init__(self) -> None:
        self.orders: dict[str, BookOrder] = {}
        self.placed: list[str] = []  # client ids in acceptance order (a duplicate would show twice)
        self.faults: deque[str] = deque()
        self.verified: list[str] = []  # paths of the signed requests whose signature checked out
        self.locked: dict[str, float] = {}  # coins reserved by resting stops
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

    # -- stop-loss sells --------------------------------------------------------------------------
    def place_stop(self, client_id: str, symbol: str, quantity: float, trigger: float,
                   limit: float | None = None) -> BookOrder | str:
        """Accept a resting stop-loss sell, or say why not: ``duplicate`` or ``insufficient_balance``."""
        with self._lock:
            previous = self.orders.get(client_id)
            if previous is not None and (previous.status == "open" or not self.reuse_filled_ids):
                return "duplicate"
            base = symbol.split("/")[0]
            if self.balances.get(base, 0.0) < quantity - 1e-12:
                return "insufficient_balance"
            if self.lock_stops:
                self.balances[base] -= quantity
                self.locked[base] = self.locked.get(base, 0.0) + quantity
            order = BookOrder(client_id, str(next(self._ids)), symbol, "sell", quantity, 0.0, limit or 0.0, 0.0, 0.0,
                              symbol.split("/")[1], "open", self.server.now(), "stop", trigger, limit)
            self.orders[client_id] = order
            self.placed.append(client_id)
            return order

    def move_price(self, symbol: str, price: float) -> None:
        """The market trades at ``price`` now: resting stops at or above it trigger."""
        with self._lock:
            self.prices[symbol] = price
            for order in list(self.orders.values()):
                if order.kind == "stop" and order.symbol == symbol and order.status == "open":
                    if not order.triggered and order.trigger is not None and price <= order.trigger:
                        order.triggered = True
                    if order.triggered and (order.limit is None or price >= order.limit):
                        self._fill_stop(order, price)

    def cancel(self, client_id: str) -> BookOrder | None:
        """Cancel a resting stop; None when there is no open order with that id (filled, cancelled
        or unknown). The ``fill_before_cancel`` fault fills it at its trigger first."""
        race = False
        with self._lock:
            if self.faults and self.faults[0] == "fill_before_cancel":
                self.faults.popleft()
                race = True
            order = self.orders.get(client_id)
            if order is None or order.status != "open":
                return None
            if race:
                assert order.trigger is not None
                self.prices[order.symbol] = order.trigger
                self._fill_stop(order, order.limit if order.limit is not None else order.trigger)
                return None
            self._release(order)
            order.status, order.time_ms = "canceled", self.server.now()
            return order

    def _release(self, order: BookOrder) -> None:
        if self.lock_stops:
            left = order.requested - order.filled
            self.locked[order.base] = self.locked.get(order.base, 0.0) - left
            self.balances[order.base] = self.balances.get(order.base, 0.0) + left

    def _fill_stop(self, order: BookOrder, price: float) -> None:
        """Sell a triggered stop's quantity at ``price`` (the lock is held)."""
        self._release(order)
        base, quote = order.base, order.quote
        filled = min(order.requested, self.balances.get(base, 0.0))
        cost = filled * price
        fee = cost * self.commission
        self.balances[base] -= filled
        self.balances[quote] = self.balances.get(quote, 0.0) + cost - fee
        now = self.server.now()
        if self.stop_child_orders:
            child = BookOrder("", str(next(self._ids)), order.symbol, "sell", order.requested, filled, price, cost,
                              fee, quote, "filled" if filled >= order.requested - 1e-12 else "expired", now)
            self.orders[f"~{child.order_id}"] = child
            order.child_id = child.order_id
        order.filled, order.price, order.cost, order.fee = filled, price, cost, fee
        order.status, order.time_ms = ("filled" if filled >= order.requested - 1e-12 else "expired"), now

    def find(self, client_id: str | None = None, order_id: str | None = None) -> BookOrder | None:
        with self._lock:
            if client_id:
                return self.orders.get(client_id)
            return next((o for o in self.orders.values() if o.order_id == order_id), None)

    def balance_rows(self) -> list[tuple[str, float]]:
        """``(asset, free)`` per asset (what resting stops reserve is not free)."""
        with self._lock:
            return sorted(self.balances.items())

    def locked_of(self, asset: str) -> float:
        with self._lock:
            return self.locked.get(asset, 0.0)
