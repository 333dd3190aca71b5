"""The order wrapper: one interface, paper fills inside it, live orders through the exchange client.

The tick worker and the webhook trigger hand an :class:`OrderIntent` to a gateway and get a
:class:`Fill` back; they cannot tell paper from live (freqtrade's dry-run lives in its exchange
wrapper the same way).

* :class:`PaperGateway` fills at the intent's ``reference_price`` — the price the engine's stepper
  computed (open × (1 ± slippage), or the stop level), with ``fee`` × notional — so paper numbers
  are the backtest's numbers.
* :class:`LiveGateway` places a market order whose client order id is the intent's deterministic
  id (:mod:`.client_ids`), through :meth:`capandex.exchanges.ExchangeClient.create_market_order`
  (each exchange's own id parameter is data there). **Before placing it looks the id up** on the
  exchange: a retry after a timeout, a 5xx or a worker that died after the exchange accepted the
  order finds that order instead of placing a second one. After an ambiguous failure (timeout,
  5xx, connection reset) it looks the id up again; if the exchange still does not know the id the
  outcome stays unknown (:class:`OrderOutcomeUnknown`) and the tick is retried later — with the
  same id, so at most one order can ever exist for it (an exchange refusing a reused id — Binance
  -2010 "Duplicate order sent.", OKX 51016, Bybit 170141 — raises
  :class:`~capandex.exchanges.errors.DuplicateClientOrderId`, handled as "look it up"). Order
  placement itself is never retried blindly. The gateway sees only Capandex's typed errors: what
  an exchange's answer means is decided in :mod:`capandex.exchanges.errors`.

**Reconciliation before a sell.** After the lookup (so a retry finds its own earlier sale
instead of an empty account), a sell checks the free balance of the base asset: selling more
than the account holds is never attempted. When the account lacks more than dust
(:meth:`LiveGateway.tolerance`: the buy fee an exchange may take in the base asset plus one
minimum order amount) — the user sold by hand, outside Capandex — the missing units come back
as :attr:`Fill.unheld`: the gateway sells what is there, or, when nothing tradable is there,
places no order and returns :meth:`Fill.not_held`. The ledger closes the unheld units in its
records with exit reason ``reconciled`` (:mod:`.ledger`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from capandex.errors import BadRequest, CapandexError, RateLimited, UpstreamError, UpstreamUnavailable
from capandex.exchanges.errors import DuplicateClientOrderId, OrderOutcomeUnknown, OrderRejected
from capandex.live.client_ids import client_order_id
from capandex.telemetry import Metric, count

if TYPE_CHECKING:
    from capandex.exchanges import ExchangeClient
    from capandex.exchanges.orders import ExchangeOrder

__all__ = ["CANCEL", "MARKET", "NOT_HELD", "REJECTED", "SKIPPED", "STALE", "STOP", "Fill", "GatewayFactory",
           "LiveGateway", "OrderGateway", "OrderIntent", "OrderOutcomeUnknown", "OrderRejected", "PaperGateway",
           "default_gateway"]


#: :attr:`OrderIntent.kind`: a market order; a protective stop-loss sell resting on the exchange;
#: the cancellation of such a stop (its client id is the stop's) — see :mod:`.protective`
MARKET, STOP, CANCEL = "market", "stop", "cancel"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order to place: ``amount`` in base units; ``reference_price`` is the engine's fill
    price (paper) or the last close (live: used only for estimates); ``reason`` is the exit reason
    or ``signal``; ``action`` is what the client id was derived from (``buy``, ``exit:stop_loss``,
    ``webhook:sell`` …); ``note`` is written on the trade it closes (e.g. a stop crossed inside a
    candle processed late, :func:`capandex.live.catchup.late_exit_note`). ``kind`` is
    :data:`MARKET`, :data:`STOP` (``trigger``: its level; None with ``offset``: the level is the
    entry fill × (1 − offset), known once the buy before it filled) or :data:`CANCEL`."""

    client_order_id: str
    side: str
    amount: float
    reference_price: float
    reason: str
    action: str
    note: str | None = None
    kind: str = MARKET
    trigger: float | None = None
    offset: float | None = None

    @classmethod
    def for_action(cls, execution_id: str, key: int, action: str, side: str, amount: float, price: float,
                   reason: str, *, note: str | None = None) -> OrderIntent:
        """The intent of ``action`` of ``execution_id`` for ``key`` (a candle's open time or a
        webhook call's key), its client id derived from the three: the same on every retry of the
        same decision (:mod:`.client_ids`)."""
        return cls(client_order_id(execution_id, key, action), side, amount, price, reason, action, note)

    def to_dict(self) -> dict[str, Any]:
        """The persisted JSON; the fields added since the first release only when they are set, so
        a market order reads as earlier releases wrote it."""
        data = asdict(self)
        for key, default in (("note", None), ("kind", MARKET), ("trigger", None), ("offset", None)):
            if data[key] == default:
                del data[key]
        return data


#: :attr:`Fill.status` (and ``orders.status``) of a sell that placed no order: nothing was held
NOT_HELD = "not_held"
#: ... of an order that was not needed any more (a stop or a sell after the stop had filled)
SKIPPED = "skipped"
#: ... of a protective stop the exchange refused (the position stays protected on each tick only)
REJECTED = "rejected"
#: ... of a buy not placed because its signal was stale when it came to be sent (:mod:`.entries`)
STALE = "stale"


@dataclass(frozen=True, slots=True)
class Fill:
    """A filled (or partly filled) order: ``amount`` base units filled at average ``price``;
    ``cost`` = amount × price and ``fee`` in quote currency; ``status`` is ccxt's unified order
    status (``closed`` = completely filled; ``canceled``/``expired``/``open`` with some
    ``amount`` = partly filled, e.g. a market order that ran out of liquidity; :data:`NOT_HELD`
    = no order was placed because the account held nothing tradable to sell; ``open`` = a
    protective stop resting on the exchange; :data:`SKIPPED`, :data:`REJECTED`, :data:`STALE`). ``unheld``: base
    units of a sell the account did not hold (sold outside Capandex), 0 for buys and paper.
    ``requested``: the quantity the order asked for (a resting stop's); ``time_ms``: when the
    exchange last traded or changed it (a stop's fill time)."""

    client_order_id: str
    exchange_order_id: str | None
    side: str
    amount: float
    price: float
    cost: float
    fee: float
    status: str = "closed"
    unheld: float = 0.0
    requested: float | None = None
    time_ms: int | None = None

    @classmethod
    def not_held(cls, intent: OrderIntent) -> Fill:
        """The answer to a sell of units the account no longer holds at all: no order, all unheld
        (``price`` is the intent's reference price, nothing filled at it)."""
        return cls(intent.client_order_id, None, intent.side, 0.0, intent.reference_price, 0.0, 0.0, NOT_HELD,
                   intent.amount)

    @classmethod
    def nothing(cls, intent: OrderIntent, status: str) -> Fill:
        """No order and no fill, with ``status`` (:data:`SKIPPED`, :data:`REJECTED`)."""
        return cls(intent.client_order_id, None, intent.side, 0.0, intent.reference_price, 0.0, 0.0, status)

    @property
    def partial(self) -> bool:
        """The exchange did not fill the whole order."""
        return self.status != "closed"

    @property
    def order_status(self) -> str:
        """``orders.status`` for this fill: filled, partially_filled, unfilled, not_held, skipped,
        rejected, stale, open (a resting stop) or canceled (a stop cancelled before it filled)."""
        if self.status in (NOT_HELD, SKIPPED, REJECTED, STALE, "open"):
            return self.status
        if self.amount <= 0:
            return "canceled" if self.status == "canceled" else "unfilled"
        return "partially_filled" if self.partial else "filled"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OrderGateway(Protocol):
    def place(self, intent: OrderIntent) -> Fill:
        """Place (or find) the order ``intent`` and return its fill."""

    def stop_state(self, intent: OrderIntent) -> Fill | None:
        """What the protective stop ``intent`` is now on the exchange (None: unknown there)."""

    def find(self, intent: OrderIntent) -> Fill | None:
        """The market order ``intent`` as the exchange has it (None: unknown there); places nothing."""


#: execution row → the gateway that places its orders (live mode)
GatewayFactory = Callable[[Any], OrderGateway]


def default_gateway(row: Any) -> OrderGateway:
    """The live gateway for an execution: the user's key from the vault (its requests booked against
    the key's budget, :mod:`.budget`), the flow's symbol and fee."""
    from capandex.db.session import transaction
    from capandex.exchanges import get_client
    from capandex.keys.exchange import load_credentials
    from capandex.live.budget import budgeted
    from capandex.live.running import fee_rate

    with transaction() as conn:
        exchange_id, credentials = load_credentials(conn, user_id=row.user_id, key_id=row.exchange_key_id)
    client = budgeted(get_client(exchange_id, credentials), row.user_id, row.exchange_key_id)
    return LiveGateway(client, row.symbol, fee_rate(row))


class PaperGateway:
    """Fills every intent at its reference price with ``fee_rate`` × notional; never fails."""

    def __init__(self, fee_rate: float) -> None:
        self.fee_rate = fee_rate

    def stop_state(self, intent: OrderIntent) -> Fill | None:
        raise NotImplementedError("paper executions keep no stop orders on an exchange")

    def find(self, intent: OrderIntent) -> Fill | None:
        raise NotImplementedError("paper orders are filled as they are placed")

    def place(self, intent: OrderIntent) -> Fill:
        cost = intent.amount * intent.reference_price
        return Fill(intent.client_order_id, f"paper-{intent.client_order_id}", intent.side, intent.amount,
                    intent.reference_price, cost, cost * self.fee_rate)


class LiveGateway:
    """Market orders on a real exchange through a :class:`capandex.exchanges.ExchangeClient`.

    Args:
        client: the user's client (credentials loaded from the vault).
        symbol: the unified symbol (``BTC/USDT``).
        fee_rate: used to value a fee charged in a third currency (e.g. BNB), as a fraction.
        lookup_attempts: lookups after an ambiguous failure before giving up for this attempt.
        lookup_pause: seconds between those lookups (the exchange may still be matching).
    """

    def __init__(self, client: ExchangeClient, symbol: str, fee_rate: float, *, lookup_attempts: int = 3,
                 lookup_pause: float = 0.5) -> None:
        self.client, self.symbol, self.fee_rate = client, symbol, fee_rate
        self.lookup_attempts, self.lookup_pause = lookup_attempts, lookup_pause

    # -- reads -----------------------------------------------------------------------------------
    def lookup(self, intent: OrderIntent) -> Fill | None:
        """The order with the intent's client id, or None when the exchange does not know it."""
        order = self.client.fetch_order_by_client_id(self.symbol, intent.client_order_id)
        return None if order is None else self._fill(order, intent)

    def find(self, intent: OrderIntent) -> Fill | None:
        """The order with the intent's client id as it stands (one still working is waited for, as
        :meth:`place` does); None when the exchange does not know it. Places nothing: a buy whose
        signal went stale is only looked up (:mod:`.entries`)."""
        found = self.lookup(intent)
        return None if found is None else self._settled(intent, found)

    def free_base(self) -> float | None:
        """Free balance of the symbol's base currency (None when the exchange did not say)."""
        return self.client.free_balance(self.symbol.split("/")[0])

    def tolerance(self, amount: float) -> float:
        """Base units a sell of ``amount`` may lack and still count as held: the buy fee the
        exchange may have charged in the base asset (``fee_rate`` × amount) plus the market's
        minimum order amount (a remainder below it could not be sold anyway)."""
        return amount * self.fee_rate + self.client.min_order_amount(self.symbol)

    def tradable(self, amount: float) -> float:
        """``amount`` cut to the market's precision; 0.0 when that is below its minimum order."""
        precise = self.client.amount_to_precision(self.symbol, amount)
        return precise if precise >= self.client.min_order_amount(self.symbol) else 0.0

    # -- the one write ------------------------------------------------------------------------------
    def place(self, intent: OrderIntent) -> Fill:
        """Look the id up, place it if unknown, and resolve an ambiguous failure by id. A sell
        is cut to the free base balance; what the account lacks is the fill's ``unheld`` (all of
        it, and no order, when nothing tradable is left: :meth:`Fill.not_held`).

        Raises:
            OrderRejected: insufficient balance, delisted/unknown symbol, or an invalid amount.
            OrderOutcomeUnknown: timeout/5xx/rate limit and the id is still unknown, or the order
                is still working (``open``); retry later.
        """
        try:
            if intent.kind == STOP:
                fill = self._protect(intent)
            elif intent.kind == CANCEL:
                fill = self._unprotect(intent)
            else:
                fill = self._settled(intent, self._place(intent))
        except CapandexError:
            count(Metric.ORDERS_FAILED)
            raise
        count(Metric.ORDERS_PLACED)
        return fill

    # -- protective stops (:mod:`.protective`) -----------------------------------------------------
    def _protect(self, intent: OrderIntent) -> Fill:
        """Place the stop-loss sell at ``intent.trigger`` for at most what the account holds (looked
        up by id first). A refusal is not an error of the tick (its position stays protected on each
        tick): it comes back :data:`REJECTED`."""
        if intent.trigger is None:
            raise ValueError("a stop order needs its trigger level")
        found = self.client.fetch_stop_by_client_id(self.symbol, intent.client_order_id)
        if found is not None:
            return self._stop_fill(found, intent)
        free = self.free_base()
        amount = self.tradable(intent.amount if free is None else min(intent.amount, free))
        if amount <= 0.0:
            return Fill.nothing(intent, SKIPPED)
        try:
            order = self.client.create_stop_order(self.symbol, amount, intent.trigger, intent.client_order_id)
        except (OrderRejected, BadRequest):
            return Fill.nothing(intent, REJECTED)
        except (DuplicateClientOrderId, UpstreamUnavailable, RateLimited, UpstreamError):
            return self._resolve(intent, self._stop_lookup)  # do not assume it was not placed
        return self._stop_fill(order, intent)

    def _unprotect(self, intent: OrderIntent) -> Fill:
        """Cancel the stop ``intent.client_order_id``: what it became (cancelled, or its fill when
        it fired first); :data:`SKIPPED` when the exchange does not know it."""
        order = self.client.cancel_stop_by_client_id(self.symbol, intent.client_order_id)
        return Fill.nothing(intent, SKIPPED) if order is None else self._stop_fill(order, intent)

    def stop_state(self, intent: OrderIntent) -> Fill | None:
        """What the resting stop ``intent`` is now (``open`` while it waits); None when unknown."""
        return self._stop_lookup(intent)

    def _stop_lookup(self, intent: OrderIntent) -> Fill | None:
        found = self.client.fetch_stop_by_client_id(self.symbol, intent.client_order_id)
        return None if found is None else self._stop_fill(found, intent)

    def _stop_fill(self, order: ExchangeOrder, intent: OrderIntent) -> Fill:
        fill = replace(self._order_fill(order, intent.client_order_id), side="sell", requested=order.amount,
                       time_ms=order.updated_ms)
        if fill.status == "open":  # resting: its price is its level (a stop-limit's own is its limit)
            return replace(fill, amount=0.0, cost=0.0, fee=0.0,
                           price=order.trigger_price or intent.trigger or intent.reference_price)
        return fill

    def _settled(self, intent: OrderIntent, fill: Fill) -> Fill:
        """Wait (a few lookups) for a still-working order to finish: recording an ``open`` order's
        fill so far would miss whatever fills after it."""
        for _ in range(self.lookup_attempts):
            if fill.status != "open":
                return fill
            time.sleep(self.lookup_pause)
            fill = self.lookup(intent) or fill
        if fill.status != "open":
            return fill
        raise OrderOutcomeUnknown(f"Order {fill.client_order_id} on {self.symbol} is still working; the tick will "
                                  "be retried and will find it by its id.")

    def _place(self, intent: OrderIntent) -> Fill:
        try:  # an unlisted symbol has no order to find or to place
            self.client.market(self.symbol)
        except BadRequest as exc:
            raise self._delisted() from exc
        found = self.lookup(intent)
        if found is not None:
            return found
        held = self._held(intent)
        amount = self.tradable(held)
        if amount <= 0.0 and held < intent.amount:
            return Fill.not_held(intent)
        if amount <= 0.0:
            raise OrderRejected(f"The order amount {intent.amount} is not tradable on {self.symbol}.",
                                reason="invalid_amount")
        try:
            order = self.client.create_market_order(self.symbol, intent.side, amount, intent.client_order_id)
        except OrderRejected:
            raise  # insufficient balance, delisted symbol, invalid order: for good
        except DuplicateClientOrderId:
            return self._resolve(intent)  # placed before: find it
        except BadRequest as exc:
            raise self._delisted() from exc
        except (UpstreamUnavailable, RateLimited, UpstreamError):
            return self._resolve(intent)  # do not assume it was not placed
        return self._fill(order, intent)

    def _delisted(self) -> OrderRejected:
        return OrderRejected(f"{self.symbol} is not tradable any more (delisted or unknown).", reason="delisted")

    def _held(self, intent: OrderIntent) -> float:
        """What the intent may trade: its amount; for a sell at most the free base balance."""
        free = self.free_base() if intent.side == "sell" else None
        return intent.amount if free is None else min(intent.amount, free)

    def _resolve(self, intent: OrderIntent, lookup: Callable[[OrderIntent], Fill | None] | None = None) -> Fill:
        """After an ambiguous placement: look the id up (``lookup``, default :meth:`lookup`) until
        the exchange shows the order (a new order can take a moment to appear). A lookup that fails
        is already retried by the client (retries live in one layer); if it still fails, the
        outcome stays unknown."""
        lookup = lookup or self.lookup
        for attempt in range(self.lookup_attempts):
            try:
                found = lookup(intent)
            except CapandexError as exc:
                raise self._unknown(intent) from exc
            if found is not None:
                return found
            if attempt + 1 < self.lookup_attempts:
                time.sleep(self.lookup_pause)
        raise self._unknown(intent)

    def _unknown(self, intent: OrderIntent) -> OrderOutcomeUnknown:
        return OrderOutcomeUnknown(f"Placing order {intent.client_order_id} on {self.symbol} failed and the "
                                   "exchange does not know it yet; the tick will be retried with the same id.")

    def _fill(self, order: ExchangeOrder, intent: OrderIntent) -> Fill:
        """The exchange's order as a :class:`Fill`. A sell's ``unheld`` is the part of the intent's
        amount the order did not ask for, beyond :meth:`tolerance`; it is read from the order
        itself, so a retry that finds the order by id reaches the answer of the worker that placed it."""
        fill = self._order_fill(order, intent.client_order_id)
        if intent.side != "sell":
            return fill
        missing = intent.amount - (order.amount or fill.amount)
        return replace(fill, unheld=missing) if missing > self.tolerance(intent.amount) else fill

    def _order_fill(self, order: ExchangeOrder, client_order_id: str) -> Fill:
        # an explicit filled of 0 (an expired market order) must not fall back to the requested
        # amount: only a response without ``filled`` that says "closed" means amount was filled
        filled = order.filled
        if filled is None:
            filled = order.amount if order.status in (None, "closed") else 0.0
        filled = filled or 0.0
        price = order.average or order.price or 0.0
        cost = order.cost or filled * price
        if not price and filled:
            price = cost / filled
        return Fill(client_order_id, order.id, order.side or "", filled, price, cost,
                    self._fee_in_quote(order, cost, price), order.status or "closed")

    def _fee_in_quote(self, order: ExchangeOrder, cost: float, price: float) -> float:
        base, quote = self.symbol.split("/")
        total, known = 0.0, bool(order.fees)
        for fee in order.fees:
            if fee.currency == quote:
                total += fee.cost
            elif fee.currency == base:
                total += fee.cost * price
            else:
                known = False
        return total if known else cost * self.fee_rate
