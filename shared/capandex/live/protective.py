"""Protective stops on the exchange: a live position's stop-loss rests on the exchange as an order,
so it is sold at its level even while Capandex is down, behind or rate limited.

**When.** A live execution keeps one when its flow has a ``stop_loss`` or ``trailing_stop`` risk
node, its exchange supports stop orders (:data:`capandex.exchanges.stops.STOP_ORDERS`) and the flow
does not say ``settings.stopsOnExchange: false`` (:func:`enabled_at_start`, decided once when the
execution starts and kept in ``executions.state["stopsOnExchange"]``). Take-profit stays a
tick-side check (an exchange holds one resting sell of a position: see the exchanges module).

**What is placed** (:func:`level_for`): one stop-loss sell of the position at the higher of the
stop-loss level (``entry × (1 − sl%)``) and the trailing level (``max(entry, highest high since the
entry) × (1 − trail%)``) — DESIGN.md §5's levels, relative to the real entry fill. Its state is
``executions.state["stop"]`` (:class:`ProtectiveStop`).

**The orders of a tick** are ordinary intent orders (:class:`capandex.live.orders.OrderIntent`,
``kind`` ``stop`` or ``cancel``), so they share the exactly-once protocol of market orders —
deterministic client ids, lookup first, lease, resume after a crash:

* after an entry: the buy, then a stop for what it bought (:func:`after_entry`; its level is
  computed from the buy's real fill when the orders are placed, :func:`resolve`);
* while long: when the protective level rose by at least :data:`MIN_MOVE` (a trailing stop
  following the price), cancel, then place the new stop under a new id (:func:`moved`) —
  cancel first, because the old stop reserves the coins the new one sells; a stop that is
  missing (cancelled by hand) is placed again; one the exchange refused is tried again once its
  level has risen, or an hour later (:data:`RETRY_REFUSED_MS`), and the user is told once;
* any exit (a level crossed inside the candle, a signal, the kill switch, a webhook call): cancel
  the stop, then sell at market (:func:`cancel`).

**The race: the stop fills while being moved or cancelled.** Cancelling answers what the stop
became; when it had fired, the cancel op's fill is the stop's real fill (price and fee), the
position is closed with it, and :func:`resolve` skips the orders after it that assumed a position
(the new stop, the market sell). A stop that fired between ticks is recorded on the next tick:
the candle's range crossed its level, so the tick's exit finds it through the cancel; where the
candle does not show it (the exchange rounded the level up a tick), :func:`needs_sync` starts an
intent of its own that records the fill.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from capandex.live.client_ids import client_order_id
from capandex.live.orders import CANCEL, STOP, Fill, OrderIntent

if TYPE_CHECKING:
    from capandex.engine.document import Risk

#: a rise of the protective level smaller than this fraction does not move the stop (each move is
#: a cancel and a placement; the tick still checks the exact level)
MIN_MOVE = 0.001
#: ``executions.state`` key of the last stop placement the exchange refused (``{"level", "atMs"}``)
REFUSED_KEY = "stopRefused"
#: a refused stop is placed again once its level rose by :data:`MIN_MOVE`, or this long after the
#: refusal (ms, between the candles' open times) — not on every candle: a refusal for good (a notional under
#: the symbol's minimum, an account that cannot hold such orders) would cost requests and a
#: notification each candle
RETRY_REFUSED_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class ProtectiveStop:
    """The stop order protecting the open position: its client id, trigger ``level`` (quote per
    base unit), ``amount`` (base units) and the rule it enforces (``stop_loss`` or ``trailing_stop``)."""

    client_order_id: str
    level: float
    amount: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProtectiveStop:
        return cls(str(data["client_order_id"]), float(data["level"]), float(data["amount"]), str(data["reason"]))


def current(row: Any) -> ProtectiveStop | None:
    """The execution's resting stop, if it has one."""
    data = (row.state or {}).get("stop")
    return ProtectiveStop.from_dict(data) if data else None


def enabled(row: Any) -> bool:
    """Whether the execution keeps its stop on the exchange (decided at start)."""
    return bool((row.state or {}).get("stopsOnExchange"))


def enabled_at_start(document: Mapping[str, Any], risk: Risk, supported: bool) -> bool:
    """``settings.stopsOnExchange`` (default: on where ``supported``) for a flow with a stop-loss or
    trailing stop; the caller refuses ``true`` where it is not ``supported``."""
    wanted = (document.get("settings") or {}).get("stopsOnExchange")
    has_stop = risk.stop_loss is not None or risk.trailing_stop is not None
    return has_stop and supported and wanted is not False


def level_for(risk: Risk, entry: float, highest: float | None) -> tuple[float, str] | None:
    """The protective level of a position entered at ``entry`` whose highest high since the entry
    is ``highest`` (None before its first full candle), and the rule it comes from; None when the
    flow has neither a stop-loss nor a trailing stop."""
    from capandex.engine import rules

    levels = []
    if risk.stop_loss is not None:
        levels.append((float(rules.stop_loss_level(entry, risk.stop_loss)), "stop_loss"))
    if risk.trailing_stop is not None:
        top = -math.inf if highest is None else highest
        levels.append((float(rules.trailing_level(entry, top, risk.trailing_stop)), "trailing_stop"))
    return max(levels) if levels else None


def _place(execution_id: str, key: int, amount: float, level: float | None, reason: str,
           offset: float | None = None) -> OrderIntent:
    return OrderIntent(client_order_id(execution_id, key, "stop"), "sell", amount, level or 0.0, reason, "stop",
                       kind=STOP, trigger=level, offset=offset)


def cancel(stop: ProtectiveStop) -> OrderIntent:
    """The order that cancels ``stop`` (its own client id: a cancel is found by what it cancels)."""
    return OrderIntent(stop.client_order_id, "sell", stop.amount, stop.level, stop.reason, "cancel", kind=CANCEL,
                       trigger=stop.level)


def after_entry(execution_id: str, key: int, risk: Risk) -> OrderIntent | None:
    """The stop placed after an entry of ``key``: its level is the entry fill × (1 − offset),
    resolved when the buy has filled (:func:`resolve`)."""
    at_entry = level_for(risk, 1.0, None)
    if at_entry is None:
        return None
    fraction, reason = at_entry
    return _place(execution_id, key, 0.0, None, reason, offset=1.0 - fraction)


def refused(row: Any) -> tuple[float, int] | None:
    """``(level, at_ms)`` of the stop placement the exchange last refused, while no stop rests."""
    data = (row.state or {}).get(REFUSED_KEY)
    return (float(data["level"]), int(data["atMs"])) if data else None


def moved(execution_id: str, key: int, stop: ProtectiveStop | None, risk: Risk, entry: float,
          highest: float | None, units: float, *, refusal: tuple[float, int] | None = None,
          at_ms: int = 0) -> list[OrderIntent]:
    """While long: the orders that bring the resting stop to the protective level (cancel and
    replace when it rose by :data:`MIN_MOVE` or more; place one when none rests — unless the
    exchange refused that level, ``refusal``, less than :data:`RETRY_REFUSED_MS` before ``at_ms``)."""
    target = level_for(risk, entry, highest)
    if target is None:
        return []
    level, reason = target
    if stop is None:
        if refusal is not None and level < refusal[0] * (1.0 + MIN_MOVE) and at_ms < refusal[1] + RETRY_REFUSED_MS:
            return []
        return [_place(execution_id, key, units, level, reason)]
    if level < stop.level * (1.0 + MIN_MOVE):
        return []
    return [cancel(stop), _place(execution_id, key, stop.amount, level, reason)]


def resolve(order: OrderIntent, done: Sequence[tuple[OrderIntent, Fill]]) -> OrderIntent | None:
    """``order`` as it is to be placed after the orders ``done`` before it in the same intent: a
    stop after an entry gets its level and amount from the buy's fill; a stop or a sell after a
    cancel that found the stop filled is not needed (None): the position is gone."""
    fired = [i for i, (o, f) in enumerate(done) if o.kind == CANCEL and f.amount > 0 and not f.partial]
    bought = [i for i, (o, f) in enumerate(done) if o.side == "buy" and f.amount > 0]
    if order.side == "sell" and order.kind != CANCEL and fired and (not bought or bought[-1] < fired[-1]):
        return None  # the stop sold the position: nothing is left to sell or to protect
    if order.kind == STOP and order.trigger is None:
        buys = [f for o, f in done if o.side == "buy" and f.amount > 0]
        if not buys or order.offset is None:
            return None
        entry = buys[-1]
        level = entry.price * (1.0 - order.offset)
        return replace(order, amount=entry.amount, trigger=level, reference_price=level)
    return order


def needs_sync(stop: ProtectiveStop, fill: Fill | None, first_ms: int | None, tf_ms: int) -> bool:
    """Whether a stop found no longer resting (``fill``: what the exchange says it became; None:
    unknown to it) must be recorded before the tick's candles (first: ``first_ms``) are processed:
    it was cancelled outside Capandex, or it filled in a candle already processed or before the
    first one (a fill inside a candle still to process is found by that candle's exit instead)."""
    if fill is not None and fill.status == "open":
        return False
    if fill is None or fill.amount <= 0 or fill.time_ms is None or first_ms is None:
        return True
    return fill.time_ms < first_ms + tf_ms
