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
          -1`` (market), id in ``algoClOrdId``                      (``algoClOrdId``); once triggered
                                                                    (``effective``) the fill is on the
                                                                    order in its ``ordId``
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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from capandex.exchanges.orders import Lookup


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
