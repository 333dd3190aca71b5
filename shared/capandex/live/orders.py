"""The order wrapper: one interface, paper fills inside it, live orders through ccxt.

The tick worker and the webhook trigger hand an :class:`OrderIntent` to a gateway and get a
:class:`Fill` back; they cannot tell paper from live (freqtrade's dry-run lives in its exchange
wrapper the same way).

* :class:`PaperGateway` fills at the intent's ``reference_price`` — the price the engine's stepper
  computed (open × (1 ± slippage), or the stop level), with ``fee`` × notional — so paper numbers
  are the backtest's numbers.
* :class:`LiveGateway` places a market order with ``newClientOrderId`` = the intent's deterministic
  id (:mod:`.client_ids`). **Before placing it looks the id up** on the exchange: a retry after a
  timeout, a 5xx or a worker that died after the exchange accepted the order finds that order
  instead of placing a second one. After an ambiguous failure (timeout, 5xx, connection reset) it
  looks the id up again; if the exchange still does not know the id the outcome stays unknown
  (:class:`OrderOutcomeUnknown`) and the tick is retried later — with the same id, so at most one
  order can ever exist for it (Binance refuses a reused id with -2010 "Duplicate order sent.",
  which is handled as "look it up"). Order placement itself is never retried blindly.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from capandex.errors import BadRequest, CapandexError, RateLimited, UpstreamError, UpstreamUnavailable


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A market order to place: ``amount`` in base units; ``reference_price`` is the engine's fill
    price (paper) or the last close (live: used only for estimates); ``reason`` is the exit reason
    or ``signal``/``webhook``; ``action`` is what the client id was derived from."""

    client_order_id: str
    side: str
    amount: float
    reference_price: float
    reason: str
    action: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Fill:
    """A filled (or partly filled) order: ``amount`` base units filled at average ``price``;
    ``cost`` = amount × price and ``fee`` in quote currency; ``status`` is ccxt's unified order
    status (``closed`` = completely filled; ``canceled``/``expired``/``open`` with some
    ``amount`` = partly filled, e.g. a market order that ran out of liquidity)."""

    client_order_id: str
    exchange_order_id: str
    side: str
    amount: float
    price: float
    cost: float
    fee: float
    status: str = "closed"

    @property
    def partial(self) -> bool:
        """The exchange did not fill the whole order."""
        return self.status != "closed"

    @property
    def order_status(self) -> str:
        """``orders.status`` for this fill: filled, partially_filled or unfilled."""
        if self.amount <= 0:
            return "unfilled"
        return "partially_filled" if self.partial else "filled"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OrderRejected(UpstreamError):
    """The exchange refused the order for good (insufficient balance, delisted symbol, invalid
    amount): retrying the same order cannot succeed; ``reason`` says which."""

    code = "order_rejected"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class OrderOutcomeUnknown(UpstreamUnavailable):
    """The placement failed ambiguously and the exchange does not (yet) know the client id: retry
    the tick later; the lookup-first rule makes that retry safe."""

    code = "order_outcome_unknown"


class OrderGateway(Protocol):
    def place(self, intent: OrderIntent) -> Fill: ...


class PaperGateway:
    """Fills every intent at its reference price with ``fee_rate`` × notional; never fails."""

    def __init__(self, fee_rate: float) -> None:
        self.fee_rate = fee_rate

    def place(self, intent: OrderIntent) -> Fill:
        cost = intent.amount * intent.reference_price
        return Fill(intent.client_order_id, f"paper-{intent.client_order_id}", intent.side, intent.amount,
                    intent.reference_price, cost, cost * self.fee_rate)


def _cause_names(exc: BaseException) -> set[str]:
    """Class names of the ccxt exception behind a translated error (ccxt stays inside exchanges)."""
    cause = exc.__cause__
    return {cls.__name__ for cls in type(cause).__mro__} if cause is not None else set()


def _cause_text(exc: BaseException) -> str:
    return str(exc.__cause__ or exc).lower()


class LiveGateway:
    """Market orders on a real exchange through a :class:`capandex.exchanges.ExchangeClient`.

    Args:
        client: the user's client (credentials loaded from the vault).
        symbol: the unified symbol (``BTC/USDT``).
        fee_rate: used to value a fee charged in a third currency (e.g. BNB), as a fraction.
        lookup_attempts: lookups after an ambiguous failure before giving up for this attempt.
        lookup_pause: seconds between those lookups (the exchange may still be matching).
    """

    def __init__(self, client: Any, symbol: str, fee_rate: float, *, lookup_attempts: int = 3,
                 lookup_pause: float = 0.5) -> None:
        self.client, self.symbol, self.fee_rate = client, symbol, fee_rate
        self.lookup_attempts, self.lookup_pause = lookup_attempts, lookup_pause

    # -- reads -----------------------------------------------------------------------------------
    def lookup(self, client_order_id: str) -> Fill | None:
        """The order with this client id, or None when the exchange does not know it."""
        try:
            raw = self.client.call(f"looking up order {client_order_id}", self.client.ccxt.fetch_order, None,
                                   self.symbol, {"origClientOrderId": client_order_id})
        except UpstreamError as exc:
            if "OrderNotFound" in _cause_names(exc):
                return None
            raise
        return self._fill(raw, client_order_id)

    def free_base(self) -> float | None:
        """Free balance of the symbol's base currency (None when the exchange did not say)."""
        base = self.symbol.split("/")[0]
        balance = self.client.fetch_balance()
        value = (balance.get("free") or {}).get(base)
        return float(value) if value is not None else None

    # -- the one write ------------------------------------------------------------------------------
    def place(self, intent: OrderIntent) -> Fill:
        """Look the id up, place it if unknown, and resolve an ambiguous failure by id.

        Raises:
            OrderRejected: insufficient balance, delisted/unknown symbol, or an invalid amount.
            OrderOutcomeUnknown: timeout/5xx/rate limit and the id is still unknown, or the order
                is still working (``open``); retry later.
        """
        return self._settled(self._place(intent))

    def _settled(self, fill: Fill) -> Fill:
        """Wait (a few lookups) for a still-working order to finish: recording an ``open`` order's
        fill so far would miss whatever fills after it."""
        for _ in range(self.lookup_attempts):
            if fill.status != "open":
                return fill
            time.sleep(self.lookup_pause)
            fill = self.lookup(fill.client_order_id) or fill
        if fill.status != "open":
            return fill
        raise OrderOutcomeUnknown(f"Order {fill.client_order_id} on {self.symbol} is still working; the tick will "
                                  "be retried and will find it by its id.")

    def _place(self, intent: OrderIntent) -> Fill:
        found = self.lookup(intent.client_order_id)
        if found is not None:
            return found
        amount = intent.amount
        if intent.side == "sell":  # reconcile: never sell more than the account holds
            free = self.free_base()
            if free is not None and free < amount:
                amount = free
        try:
            amount = float(self.client.ccxt.amount_to_precision(self.symbol, amount))
        except Exception as exc:  # ccxt raises for an amount below the market's minimum
            raise OrderRejected(f"The order amount {amount} is not tradable on {self.symbol}.",
                                reason="invalid_amount") from exc
        try:
            self.client.market(self.symbol)
            raw = self.client.call(f"placing a {intent.side} order on {self.symbol}", self.client.ccxt.create_order,
                                   self.symbol, "market", intent.side, amount, None,
                                   {"newClientOrderId": intent.client_order_id})
        except (UpstreamUnavailable, RateLimited):
            return self._resolve(intent)
        except BadRequest as exc:
            raise OrderRejected(f"{self.symbol} is not tradable any more (delisted or unknown).",
                                reason="delisted") from exc
        except UpstreamError as exc:
            return self._classify(intent, exc)
        return self._fill(raw, intent.client_order_id)

    def _classify(self, intent: OrderIntent, exc: UpstreamError) -> Fill:
        text = _cause_text(exc)
        if "duplicate order" in text or "DuplicateOrderId" in _cause_names(exc):
            return self._resolve(intent)  # placed before: find it
        if "insufficient" in text or "InsufficientFunds" in _cause_names(exc):
            raise OrderRejected(f"Insufficient balance for a {intent.side} of {intent.amount} {self.symbol}.",
                                reason="insufficient_balance") from exc
        if "invalid symbol" in text or "BadSymbol" in _cause_names(exc):
            raise OrderRejected(f"{self.symbol} is not tradable any more (delisted or unknown).",
                                reason="delisted") from exc
        if "InvalidOrder" in _cause_names(exc):
            raise OrderRejected(f"The exchange rejected the order: {exc.message}", reason="rejected") from exc
        return self._resolve(intent)  # any other error: do not assume it was not placed

    def _resolve(self, intent: OrderIntent) -> Fill:
        for attempt in range(self.lookup_attempts):
            try:
                found = self.lookup(intent.client_order_id)
            except CapandexError:
                found = None
            if found is not None:
                return found
            if attempt + 1 < self.lookup_attempts:
                time.sleep(self.lookup_pause)
        raise OrderOutcomeUnknown(f"Placing order {intent.client_order_id} on {self.symbol} failed and the "
                                  "exchange does not know it yet; the tick will be retried with the same id.")

    def _fill(self, raw: dict[str, Any], client_order_id: str) -> Fill:
        # an explicit filled of 0 (an expired market order) must not fall back to the requested
        # amount: only a response without ``filled`` that says "closed" means amount was filled
        filled = raw.get("filled")
        if filled is None:
            filled = raw.get("amount") if raw.get("status") in (None, "closed") else 0.0
        filled = float(filled or 0.0)
        price = float(raw.get("average") or raw.get("price") or 0.0)
        cost = float(raw.get("cost") or filled * price)
        if not price and filled:
            price = cost / filled
        return Fill(client_order_id, str(raw.get("id")), raw.get("side") or "", filled, price, cost,
                    self._fee_in_quote(raw, cost, price), str(raw.get("status") or "closed"))

    def _fee_in_quote(self, raw: dict[str, Any], cost: float, price: float) -> float:
        base, quote = self.symbol.split("/")
        fees = raw.get("fees") or ([raw["fee"]] if raw.get("fee") else [])
        total, known = 0.0, bool(fees)
        for fee in fees:
            amount, currency = float(fee.get("cost") or 0.0), fee.get("currency")
            if currency == quote:
                total += amount
            elif currency == base:
                total += amount * price
            else:
                known = False
        return total if known else cost * self.fee_rate
