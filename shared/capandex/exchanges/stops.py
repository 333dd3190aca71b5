"""Protective stop orders on spot markets: a stop-loss sell resting on the exchange, placed, found
and cancelled by the caller's client order id — what differs between exchanges, as data.

A live position is protected by a stop order on the exchange (``settings.stopsOnExchange``), so it
is sold when the price falls to the stop level even while Capandex is down or behind. Each ccxt
class spells such an order differently; :data:`STOP_ORDERS` holds, per ccxt id, read from ccxt's
source (4.5) and proven against the loopback servers (``tests/utils/*_orders.py``):

========  =======================================================  ==================================
exchange  the order (ccxt ``create_order`` params → REST)          found / cancelled by client id
========  =======================================================  ==================================
binance   ``stopLossPrice`` → ``POST /api/v3/order`` type          ``GET``/``DELETE /api/v3/order``
          ``STOP_LOSS`` (a market sell at ``stopPrice``) where      ``origClientOrderId``; the stop is
          the symbol lists it in ``orderTypes``, else               an ordinary order (same id, NEW →
          ``STOP_LOSS_LIMIT`` with a limit 1 % under the stop       FILLED)
          (freqtrade's ``stoploss_on_exchange_limit_ratio``)
okx       ``stopLossPrice`` → ``POST /api/v5/trade/order-algo``     ``GET /api/v5/trade/order-algo``
          ``ordType: conditional``, ``slTriggerPx``, ``slOrdPx:     and ``POST …/cancel-algos``
          -1`` (market), id in ``algoClOrdId``, ``tdMode: cash``    (``algoClOrdId``); once triggered
          (ccxt's ``cross`` default is a margin order: the client   (``effective``) the fill is on the
          option ``defaultMarginMode`` says ``cash``)               order in its ``ordId``
bybit     ``stopLossPrice`` → ``POST /v5/order/create``             ``GET /v5/order/realtime`` then
          ``orderFilter: tpslOrder``, ``triggerPrice``,             ``/history`` and ``POST
          ``triggerDirection: 2``, Market (the base coin is         /v5/order/cancel`` with
          reserved while it waits), id in ``orderLinkId``           ``orderFilter: tpslOrder``
========  =======================================================  ==================================

Take-profit and trailing stops are not placed as exchange orders: one resting sell already reserves
the position (an OCO or a native trailing order exists only on some of them, with different
semantics); the live engine moves the stop up as its trailing level rises (cancel, then place with
a new id) and checks the take-profit on each tick.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from capandex.errors import BadRequest
from capandex.exchanges.errors import OrderNotFound
from capandex.exchanges.orders import ExchangeOrder, Lookup, OrderFee, first_found
from capandex.exchanges.retry import retrier

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StopSupport:
    """How one ccxt class places, finds and cancels a spot stop-loss sell by client id.

    Attributes:
        create_param: the create params' key that carries the client id.
        create_extra: further create params.
        lookups: ways to find the stop by client id, tried in order.
        cancel_param: the cancel params' key that carries the client id; ``cancel_extra`` the rest.
        limit_below: where the symbol does not offer a market stop (``market_stop_type`` absent from
            the market's ``info[order_types_key]``), a stop-limit is placed with its limit this
            fraction under the stop level; None: the stop is always a market stop.
        child_order_field: the field of a triggered stop's raw record naming the order that filled
            it (OKX's algo orders); None when the stop itself fills.
        fees_from_trades: a filled stop's order record carries no fee (Binance's ``GET
            /api/v3/order``): its trades (``fetch_order_trades`` → ``GET /api/v3/myTrades``) do.
    """

    create_param: str
    lookups: tuple[Lookup, ...]
    cancel_param: str
    create_extra: tuple[tuple[str, Any], ...] = ()
    cancel_extra: tuple[tuple[str, Any], ...] = ()
    limit_below: float | None = None
    market_stop_type: str | None = None
    order_types_key: str | None = None
    child_order_field: str | None = None
    fees_from_trades: bool = False

    def market_stop(self, market: Mapping[str, Any]) -> bool:
        """Whether ``market`` (a ccxt market) takes a stop that sells at market once triggered."""
        if self.limit_below is None or self.order_types_key is None:
            return True
        return self.market_stop_type in ((market.get("info") or {}).get(self.order_types_key) or ())

    def create_args(self, market: Mapping[str, Any], level: float, client_order_id: str
                    ) -> tuple[str, float | None, dict[str, Any]]:
        """``(type, price, params)`` of ccxt's ``create_order`` for a stop-loss sell at ``level``."""
        params: dict[str, Any] = {**dict(self.create_extra), "stopLossPrice": level,
                                  self.create_param: client_order_id}
        if self.market_stop(market):
            return "market", None, params
        assert self.limit_below is not None
        return "limit", level * (1.0 - self.limit_below), {**params, "timeInForce": "GTC"}

    def cancel_params(self, client_order_id: str) -> dict[str, Any]:
        """The params of ccxt's ``cancel_order(None, symbol, params)`` for the stop ``client_order_id``."""
        return {**dict(self.cancel_extra), self.cancel_param: client_order_id}


#: ccxt id → stop-order parameters (the module docstring's table)
STOP_ORDERS: dict[str, StopSupport] = {
    "binance": StopSupport("newClientOrderId", (Lookup("fetch_order", "origClientOrderId"),), "origClientOrderId",
                           limit_below=0.01, market_stop_type="STOP_LOSS", order_types_key="orderTypes",
                           fees_from_trades=True),
    "okx": StopSupport("algoClOrdId", (Lookup("fetch_order", "clOrdId", extra=(("trigger", True),)),), "clOrdId",
                       cancel_extra=(("trigger", True),), child_order_field="ordId"),
    "bybit": StopSupport("orderLinkId",
                         (Lookup("fetch_open_orders", "orderLinkId", listing=True,
                                 extra=(("orderFilter", "tpslOrder"),)),
                          Lookup("fetch_canceled_and_closed_orders", "orderLinkId", listing=True,
                                 extra=(("orderFilter", "tpslOrder"),))),
                         "orderLinkId", cancel_extra=(("orderFilter", "tpslOrder"),)),
}


def supports_stop_orders(ccxt_id: str) -> bool:
    """Whether Capandex can keep a protective stop on ``ccxt_id``'s spot markets."""
    return ccxt_id in STOP_ORDERS


class StopOrderMethods:
    """The stop-order half of :class:`~capandex.exchanges.ExchangeClient` (it inherits these): a
    spot stop-loss sell placed, found and cancelled by client id through :data:`STOP_ORDERS`."""

    id: str
    ccxt: Any

    def market(self, symbol: str) -> dict[str, Any]:
        raise NotImplementedError  # the client's

    def _call(self, what: str, fn: Callable[[], T], *, orders: bool = False) -> T:
        raise NotImplementedError  # the client's

    @property
    def stop_orders(self) -> StopSupport:
        """How this exchange places, finds and cancels a spot stop-loss sell by client id;
        :class:`BadRequest` where Capandex has none (positions are then protected on each tick only)."""
        support = STOP_ORDERS.get(self.ccxt.id)
        if support is None:
            raise BadRequest(f"{self.id} offers no stop orders Capandex can keep a position's stop-loss with.")
        return support

    def create_stop_order(self, symbol: str, amount: float, level: float, client_order_id: str) -> ExchangeOrder:
        """Place a stop-loss sell of ``amount`` base units triggered when the price falls to
        ``level``, carrying ``client_order_id``. Never retried. Its ``status`` is ``open`` while it
        waits (an acknowledgement the lookup does not see yet also comes back ``open``).

        Raises:
            InsufficientBalance, SymbolNotTradable, OrderRejected: refused for good.
            DuplicateClientOrderId: a stop with this id exists: look it up.
            UpstreamUnavailable, RateLimited, UpstreamError: the outcome is unknown: look the id up.
        """
        support = self.stop_orders
        kind, price, params = support.create_args(self.market(symbol), level, client_order_id)
        raw = self._call(f"placing a stop-loss sell of {amount:.8g} {symbol} at {level:.8g}",
                         lambda: self.ccxt.create_order(symbol, kind, "sell", amount, price, params), orders=True)
        order = ExchangeOrder.from_ccxt(raw)
        if order.status is not None:
            return replace(order, client_order_id=client_order_id)
        found = self.fetch_stop_by_client_id(symbol, client_order_id)
        return found or ExchangeOrder(order.id, client_order_id, "sell", "open", amount, 0.0, None, None, None,
                                      trigger_price=level)

    @retrier
    def fetch_stop_by_client_id(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """The stop order with ``client_order_id``, as it stands: ``open`` while it waits; once it
        fired, its fill (on OKX, the fill of the order it triggered); None when the exchange does
        not know the id."""
        support = self.stop_orders
        found = first_found(support.lookups, lambda lookup: self._call(
            f"looking up stop order {client_order_id}", lookup.bind(self.ccxt, symbol, client_order_id), orders=True),
            client_order_id)
        return None if found is None else self._stop_outcome(symbol, support, found, client_order_id)

    def _stop_outcome(self, symbol: str, support: StopSupport, raw: Mapping[str, Any],
                      client_order_id: str) -> ExchangeOrder:
        """The stop as found, completed where its record lacks the fill: the triggered order's
        record (OKX), or its trades' fees (Binance)."""
        order = replace(ExchangeOrder.from_ccxt(raw), client_order_id=client_order_id, side="sell")
        child = (raw.get("info") or {}).get(support.child_order_field) if support.child_order_field else None
        if child and order.status == "closed":
            filled = self._call(f"looking up the order stop {client_order_id} triggered",
                                lambda: self.ccxt.fetch_order(child, symbol), orders=True)
            order = replace(ExchangeOrder.from_ccxt(filled), client_order_id=client_order_id,
                            trigger_price=order.trigger_price)
        if support.fees_from_trades and order.id and not order.fees and (order.filled or 0.0) > 0:
            order_id = order.id
            trades = self._call(f"fetching the fills of stop order {client_order_id}",
                                lambda: self.ccxt.fetch_order_trades(order_id, symbol), orders=True)
            fees = tuple(OrderFee(float(t["fee"].get("cost") or 0.0), t["fee"].get("currency"))
                         for t in trades if t.get("fee"))
            order = replace(order, fees=fees)
        return order

    def cancel_stop_by_client_id(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """Cancel the stop ``client_order_id`` and return what it became: ``canceled`` (with what it
        filled before, if anything) or, when it fired first, its fill; None when the exchange does
        not know the id. An answer that the stop is gone (filled, cancelled, unknown) is not an
        error: the lookup after it says which. Never retried itself (the lookup is).

        Raises:
            UpstreamUnavailable, RateLimited, UpstreamError: the cancel's outcome is unknown.
        """
        support = self.stop_orders
        with contextlib.suppress(OrderNotFound):  # gone already: the lookup says how
            self._call(f"cancelling stop order {client_order_id}",
                       lambda: self.ccxt.cancel_order(None, symbol, support.cancel_params(client_order_id)),
                       orders=True)
        return self.fetch_stop_by_client_id(symbol, client_order_id)
