"""Spot market orders identified by the caller's client order id: what differs between exchanges,
as data, and the order as the exchange reports it.

Live trading places each order at most once by giving it a deterministic client order id and
looking that id up before placing and after any ambiguous failure (:mod:`capandex.live.orders`).
That needs two things from an exchange, and each ccxt class spells them differently:

* the **create parameter** that carries the id to ``create_order`` (the exchange's own field
  name, which each ccxt class forwards unchanged);
* one or more **lookups** that find an order by that id, tried in order until one knows it.

:data:`CLIENT_ORDER_IDS` holds both per ccxt id, read from ccxt's source (4.5) and each proven
against a loopback server speaking the exchange's wire format (``tests/utils/*_orders.py``):

========  ==================  =========================================================================
exchange  create parameter    lookups (ccxt method → REST endpoint, id parameter)
========  ==================  =========================================================================
binance   newClientOrderId    ``fetch_order`` → ``GET /api/v3/order?origClientOrderId=``
okx       clOrdId             ``fetch_order`` → ``GET /api/v5/trade/order?clOrdId=``
bybit     orderLinkId         ``fetch_open_orders`` → ``GET /v5/order/realtime?orderLinkId=`` (open
                              and the last 500 closed orders: ``openOnly`` is ignored for an id),
                              then ``fetch_canceled_and_closed_orders`` → ``GET /v5/order/history``
                              (everything older, and after a Bybit restart clears the first)
========  ==================  =========================================================================

Bybit's ``fetch_order`` is not used: on unified accounts ccxt refuses it without an
``acknowledged`` flag and it requires an exchange order id; its ``fetch_closed_order`` filters on
``orderStatus=Filled`` and would miss a partly filled market order (``PartiallyFilledCanceled``).

An exchange missing from the table (mexc, coinbase, kraken) offers no verified lookup by client
id, so Capandex does not trade live on it (:func:`supports_client_order_ids`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from capandex.exchanges.errors import OrderNotFound


@dataclass(frozen=True, slots=True)
class Lookup:
    """One way to find an order by client id: ccxt ``method`` with the id in ``params[param]``
    (and the ``extra`` params, e.g. OKX's ``trigger`` for algo orders).

    ``listing``: the method lists orders (``method(symbol, since, limit, params)``, an empty list
    when none matches) rather than fetching one (``method(id, symbol, params)``, raising ccxt's
    ``OrderNotFound`` for an unknown id).
    """

    method: str
    param: str
    listing: bool = False
    extra: tuple[tuple[str, Any], ...] = ()

    def bind(self, instance: Any, symbol: str, client_order_id: str) -> Callable[[], Any]:
        """The call to make on the ccxt ``instance``, ready to run."""
        fn = getattr(instance, self.method)
        params = {**dict(self.extra), self.param: client_order_id}
        if self.listing:
            return lambda: fn(symbol, None, None, params)
        return lambda: fn(None, symbol, params)


@dataclass(frozen=True, slots=True)
class ClientIdSupport:
    """How one ccxt class carries a client order id on spot orders (see the module docstring)."""

    create_param: str
    lookups: tuple[Lookup, ...]


#: ccxt id → client-order-id parameters (the module docstring's table)
CLIENT_ORDER_IDS: dict[str, ClientIdSupport] = {
    "binance": ClientIdSupport("newClientOrderId", (Lookup("fetch_order", "origClientOrderId"),)),
    "okx": ClientIdSupport("clOrdId", (Lookup("fetch_order", "clOrdId"),)),
    "bybit": ClientIdSupport("orderLinkId", (Lookup("fetch_open_orders", "orderLinkId", listing=True),
                                             Lookup("fetch_canceled_and_closed_orders", "orderLinkId",
                                                    listing=True))),
}


def supports_client_order_ids(ccxt_id: str) -> bool:
    """Whether orders on ``ccxt_id`` can be placed and found by client id (live trading needs it)."""
    return ccxt_id in CLIENT_ORDER_IDS


@dataclass(frozen=True, slots=True)
class OrderFee:
    """A fee charged on an order: ``cost`` in ``currency`` (None when the exchange did not say)."""

    cost: float
    currency: str | None


#: relative shortfall of ``filled`` below ``amount`` that still counts as a complete fill
_COMPLETE = 1e-9


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """An order as the exchange reports it, in ccxt's unified vocabulary; ``None`` where the
    exchange did not say (an acknowledgement of a new order says little more than its ids).

    ``status``: ``open`` (still working; a stop order not triggered yet), ``closed`` (completely
    filled), ``canceled``, ``expired`` or ``rejected`` — the last three possibly after a partial
    fill. ``amount`` is the requested quantity and ``filled`` the executed one, in base units;
    ``average``/``price`` in quote per base unit; ``cost`` = the quote value filled;
    ``trigger_price`` a stop order's level; ``updated_ms`` when it last traded or changed (epoch ms).
    """

    id: str | None
    client_order_id: str | None
    side: str | None
    status: str | None
    amount: float | None
    filled: float | None
    average: float | None
    price: float | None
    cost: float | None
    fees: tuple[OrderFee, ...] = ()
    trigger_price: float | None = None
    updated_ms: int | None = None

    @classmethod
    def from_ccxt(cls, raw: Mapping[str, Any]) -> ExchangeOrder:
        """Parse ccxt's unified order structure.

        ccxt reports Bybit's ``PartiallyFilledCanceled`` (a market order that ran out of
        liquidity) as ``closed``; a ``closed`` order that filled less than it asked for is
        reported here as ``canceled``, so callers can trust ``closed`` to mean "all of it".
        """
        fees = raw.get("fees") or ([raw["fee"]] if raw.get("fee") else [])
        order = cls(_text(raw.get("id")), _text(raw.get("clientOrderId")), _text(raw.get("side")),
                    _text(raw.get("status")), _number(raw.get("amount")), _number(raw.get("filled")),
                    _number(raw.get("average")), _number(raw.get("price")), _number(raw.get("cost")),
                    tuple(OrderFee(float(fee.get("cost") or 0.0), fee.get("currency")) for fee in fees if fee),
                    _number(raw.get("triggerPrice") or raw.get("stopLossPrice") or raw.get("stopPrice")),
                    _integer(raw.get("lastTradeTimestamp") or raw.get("lastUpdateTimestamp") or raw.get("timestamp")))
        if (order.status == "closed" and order.amount and order.filled is not None
                and order.filled < order.amount * (1.0 - _COMPLETE)):
            return replace(order, status="canceled")
        return order

    @property
    def acknowledgement(self) -> bool:
        """The exchange only confirmed receipt (OKX and Bybit answer a new order with its ids
        alone): the fill is known only to a lookup."""
        return self.status is None and self.filled is None


def first_found(lookups: tuple[Lookup, ...], fetch: Callable[[Lookup], Any], client_order_id: str
                ) -> Mapping[str, Any] | None:
    """The raw order with ``client_order_id`` the first of ``lookups`` finds (``fetch`` runs one
    lookup; an :class:`~capandex.exchanges.errors.OrderNotFound` means "not this way"), or None."""
    for lookup in lookups:
        try:
            raw = fetch(lookup)
        except OrderNotFound:
            continue
        found = pick(raw, client_order_id)
        if found is not None:
            return found
    return None


def pick(raw: Any, client_order_id: str) -> Mapping[str, Any] | None:
    """The order with ``client_order_id`` in a lookup's answer (one order, or a list of them)."""
    if isinstance(raw, list):
        return next((o for o in raw if o.get("clientOrderId") == client_order_id), None)
    return raw if isinstance(raw, Mapping) else None


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _integer(value: Any) -> int | None:
    return None if value is None else int(value)
