"""The ledger of an execution: its orders, positions and fills, and reconciliation with the account.

Every order an execution intends gets an ``orders`` row (found again by its client id) that moves
from ``pending`` to ``filled`` / ``partially_filled`` / ``unfilled`` / ``not_held`` or
``rejected``; every entry opens a ``positions`` row and every exit closes one. Live positions are
always rebuilt from what the exchange reports for the intent's client ids — units and prices of
the real fills, not the simulation's (:func:`apply_fills`); paper fills are the stepper's own
(:func:`record_paper_fills`).

**Positions sold outside Capandex.** A live sell reconciles with the account first
(:class:`.orders.LiveGateway`): units the account no longer holds come back as the fill's
``unheld``, and the gateway sells only what is there (or places no order when nothing tradable is
left). The unheld units are closed in our records at the last close (the tick's candle close, or
a webhook call's price), net of the flow's fee rate, with exit reason :data:`RECONCILED` — an exit
reason of live positions only, added to the engine's (:data:`capandex.engine.rules.REASONS`); its
pnl is an estimate, as Capandex does not know what the user sold for. The user gets an
``engine_error`` notification saying so; it is not a failure (the failure count is untouched).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from capandex.db.schema import executions, new_id, orders, positions
from capandex.live import entries, protective
from capandex.live.orders import (
    CANCEL,
    MARKET,
    NOT_HELD,
    REJECTED,
    SKIPPED,
    STALE,
    STOP,
    Fill,
    OrderIntent,
    PaperGateway,
)
from capandex.live.running import fee_rate, flow_name
from capandex.notifications import notify
from capandex.timeutil import from_ms, utcnow

if TYPE_CHECKING:
    from capandex.engine import StepResult, Trade
    from capandex.live.intents import PendingIntent

#: ``positions.exit_reason`` of live units closed because the account no longer held them
RECONCILED = "reconciled"


# -- rows ------------------------------------------------------------------------------------------
def write_order(conn: Connection, row: Any, intent: OrderIntent, candle_ms: int, fill: Fill | None,
                status: str) -> None:
    """Insert the intent's ``orders`` row, or update it (found by client id) with ``fill`` and
    ``status`` (a cancel updates the row of the stop it cancels)."""
    values: dict[str, Any] = {
        "exchange_order_id": fill.exchange_order_id if fill else None, "filled": fill.amount if fill else None,
        "price": fill.price if fill else intent.reference_price, "cost": fill.cost if fill else None,
        "fee": fill.fee if fill else None, "status": status}
    if intent.kind == STOP:
        values.update(kind=STOP, trigger_price=intent.trigger, amount=(fill.requested or intent.amount) if fill
                      else intent.amount)
    existing = conn.execute(select(orders.c.id).where(orders.c.client_order_id == intent.client_order_id)).first()
    if existing:
        conn.execute(update(orders).where(orders.c.id == existing.id).values(values))
    else:
        conn.execute(insert(orders).values(id=new_id("ord"), user_id=row.user_id, execution_id=row.id,
                                           client_order_id=intent.client_order_id, symbol=row.symbol,
                                           side=intent.side, candle_ms=candle_ms, created_at=utcnow(),
                                           **{"amount": intent.amount, "kind": MARKET, **values}))


def _open_position(conn: Connection, row: Any, time_ms: int, fill: Fill, spent: float) -> None:
    conn.execute(insert(positions).values(
        id=new_id("pos"), user_id=row.user_id, flow_id=row.flow_id, execution_id=row.id, symbol=row.symbol,
        status="open", units=fill.amount, entry_price=fill.price, entry_time=from_ms(time_ms),
        fees=spent - fill.cost))


def _close_position(conn: Connection, row: Any, trade: Trade, *, keep_open: float = 0.0,
                    note: str | None = None) -> None:
    """Close the open position with ``trade`` (and ``note``); with ``keep_open`` > 0 (a partial
    sell) the trade closes ``trade.units`` of it and a new open position keeps the other ``keep_open`` units."""
    open_row = conn.execute(select(positions).where(positions.c.execution_id == row.id,
                                                    positions.c.status == "open")).first()
    values: dict[str, Any] = {"status": "closed", "exit_price": trade.exit_price,
                              "exit_time": from_ms(trade.exit_time), "pnl": trade.pnl,
                              "pnl_percent": trade.pnl_percent, "fees": trade.fees, "exit_reason": trade.exit_reason,
                              "note": note}
    if keep_open > 0 and open_row is not None:
        values["units"] = trade.units
        conn.execute(insert(positions).values(
            id=new_id("pos"), user_id=row.user_id, flow_id=row.flow_id, execution_id=row.id, symbol=row.symbol,
            status="open", units=keep_open, entry_price=open_row.entry_price, entry_time=open_row.entry_time,
            fees=(open_row.fees or 0.0) * keep_open / (open_row.units or keep_open)))
    if open_row is None:  # the entry predates this record (should not happen): keep the trade anyway
        conn.execute(insert(positions).values(
            id=new_id("pos"), user_id=row.user_id, flow_id=row.flow_id, execution_id=row.id, symbol=row.symbol,
            units=trade.units, entry_price=trade.entry_price, entry_time=from_ms(trade.entry_time), **values))
        return
    conn.execute(update(positions).where(positions.c.id == open_row.id).values(values))


def _notify_fill(conn: Connection, row: Any, name: str, fill: Fill, reason: str) -> None:
    notify(conn, user_id=row.user_id, event="trade_executed", title="Order Filled",
           message=f"{name}: {row.symbol} {fill.side} {fill.amount:.8g} filled at {fill.price:,.8g}"
                   f" ({row.mode}, {reason})", action_url="/history")


def finish_tick(conn: Connection, row: Any, candle_ms: int, state: dict[str, Any], ticks: int, *,
                succeeded: bool = True) -> None:
    """Close the books of a tick: the new ``executions.state``, ``last_candle_ms`` = ``candle_ms``,
    ``ticks`` more candles processed; a success resets the failure count."""
    values: dict[str, Any] = {"state": state, "last_candle_ms": candle_ms, "current_tick": row.current_tick + ticks}
    if succeeded:
        values["consecutive_failures"] = 0
    conn.execute(update(executions).where(executions.c.id == row.id).values(values))


# -- paper: the stepper's fills -------------------------------------------------------------------------
def record_paper_fills(conn: Connection, row: Any, name: str, gateway: PaperGateway, t_ms: int,
                       result: StepResult) -> int:
    """Turn the stepper's fills in bar ``t_ms`` into orders and positions (entry first, then exit)."""
    count = 0
    state = result.state
    if result.opened:
        if state.long:
            opened_units, entry_price, spent = state.units, state.entry_price, state.entry_spent
        else:  # entered at the open and stopped out inside the same bar
            trade = result.trade
            assert trade is not None
            opened_units, entry_price = trade.units, trade.entry_price
            spent = trade.units * trade.exit_price * (1.0 - gateway.fee_rate) - trade.pnl
        assert entry_price is not None
        intent = OrderIntent.for_action(row.id, t_ms, "buy", "buy", opened_units, entry_price, "signal")
        fill = gateway.place(intent)
        write_order(conn, row, intent, t_ms, fill, "filled")
        _open_position(conn, row, t_ms, fill, spent)
        _notify_fill(conn, row, name, fill, "signal")
        count += 1
    if result.trade is not None:
        trade = result.trade
        action = f"exit:{trade.exit_reason}"
        intent = OrderIntent.for_action(row.id, t_ms, action, "sell", trade.units, trade.exit_price, trade.exit_reason)
        fill = gateway.place(intent)
        write_order(conn, row, intent, t_ms, fill, "filled")
        _close_position(conn, row, trade)
        _notify_fill(conn, row, name, fill, trade.exit_reason)
        count += 1
    return count


# -- live: the exchange's fills -------------------------------------------------------------------------
@dataclass
class _Book:
    """The execution's positions (rows) and money (broker-state fields, quote currency; ``units``
    in base units) while :func:`apply_fills` applies real fills. ``at_ms`` is when entries open
    and exits close (the intent's ``entry_ms``)."""

    conn: Connection
    row: Any
    at_ms: int
    fee_rate: float
    cash: float
    units: float
    entry_time: int | None
    entry_price: float | None
    entry_spent: float
    highest: float | None

    def sell(self, units: float, price: float, proceeds: float, reason: str, *, whole: bool,
             note: str | None = None, at_ms: int | None = None) -> None:
        """Close ``units`` of the open position at ``price`` for ``proceeds`` (after fees), the trade
        carrying ``note`` and closing at ``at_ms`` (default :attr:`at_ms`). With ``whole`` the
        position closes entirely (a complete sell: any remainder is dust); otherwise the rest stays
        open, carrying its share of the entry cost."""
        from capandex.engine.result import make_trade

        assert self.entry_time is not None and self.entry_price is not None
        share = 1.0 if whole else min(1.0, units / self.units)
        trade = replace(make_trade(self.entry_time, self.at_ms if at_ms is None else at_ms, self.entry_price, price,
                                   units, self.entry_spent * share, proceeds, self.fee_rate, 0), exit_reason=reason)
        rest = self.units - units if share < 1.0 else 0.0
        _close_position(self.conn, self.row, trade, keep_open=rest, note=note)
        self.cash += proceeds
        if rest > 0:
            self.units, self.entry_spent = rest, self.entry_spent * (1.0 - share)
        else:
            self.units, self.entry_time, self.entry_price, self.entry_spent, self.highest = 0.0, None, None, 0.0, None

    def buy(self, fill: Fill) -> None:
        spent = fill.cost + fill.fee
        _open_position(self.conn, self.row, self.at_ms, fill, spent)
        self.cash -= spent
        self.units, self.entry_time, self.entry_price, self.entry_spent, self.highest = (
            fill.amount, self.at_ms, fill.price, spent, None)

    def money(self) -> dict[str, Any]:
        return {"cash": self.cash, "units": self.units, "entry_time": self.entry_time,
                "entry_price": self.entry_price, "entry_spent": self.entry_spent, "highest": self.highest}


def apply_fills(conn: Connection, row: Any, pending: PendingIntent,
                fills: list[tuple[OrderIntent, Fill]]) -> dict[str, Any]:
    """Apply real fills to the execution: orders, positions, notifications; returns the new
    ``executions.state`` (the caller writes it). ``pending`` holds the broker state ``before`` and
    ``after`` the simulated step, the ``close`` to mark equity (and reconciled units) at and
    ``entry_ms`` for new entries. A sell's ``unheld`` units are closed first, as :data:`RECONCILED`."""
    from capandex.engine import rules

    before, after = pending.before, pending.after
    book = _Book(conn, row, pending.entry_ms, fee_rate(row), before.cash, before.units, before.entry_time,
                 before.entry_price, before.entry_spent, after.highest if after.long else before.highest)
    name = flow_name(conn, row)
    stop, closed_here, refusal, unfilled = protective.current(row), 0.0, None, None
    for intent, fill in fills:
        write_order(conn, row, intent, pending.order_candle_ms, fill, fill.order_status)
        if intent.kind == STOP and fill.status == REJECTED:
            stop, refusal = None, {"level": intent.trigger or 0.0, "atMs": pending.order_candle_ms}
            if protective.REFUSED_KEY not in row.state:  # told once, not at every candle that tries again
                _notify_refused(book, name, intent)
            continue
        if intent.kind in (STOP, CANCEL):
            if intent.kind == CANCEL and fill.status == "canceled" and fill.amount <= 0:
                unfilled = intent  # cancelled before it sold anything: the sell after it says why
            stop, closed = _apply_stop(book, name, intent, fill, stop)
            closed_here += closed
            continue
        unheld = fill.unheld - closed_here  # what a stop that fired in this intent sold is not missing
        if unheld > 0 and book.units > 0:
            _reconcile(book, name, min(unheld, book.units), pending.close)
        if fill.side == "sell" and book.units > 0 and fill.amount > 0:
            reason = intent.reason if intent.reason in rules.REASONS else "signal"
            note = _unfilled_stop_note(unfilled, reason, intent.note)
            book.sell(fill.amount, fill.price, fill.cost - fill.fee, reason, whole=not fill.partial, note=note)
        elif fill.side == "buy" and fill.amount > 0:
            book.buy(fill)
        if fill.status not in (NOT_HELD, SKIPPED, STALE):
            _notify_fill(conn, row, name, fill, intent.reason)
    state = replace(after, **book.money(), pending=None)
    equity = float(rules.equity(state.cash, state.units, pending.close))
    new_state = {k: v for k, v in row.state.items() if k not in ("pending_tick", "stop")}
    new_state.update(broker=state.to_dict(), equity=equity)
    if any(f.status == STALE for _, f in fills):  # told at the end of the tick (:mod:`.entries`)
        new_state = entries.noted(new_state, pending.order_candle_ms)
    if stop is not None and book.units > 0:
        new_state["stop"] = stop.to_dict()
    if stop is not None or book.units <= 0:  # a stop rests, or there is nothing to protect
        new_state.pop(protective.REFUSED_KEY, None)
    elif refusal is not None:
        new_state[protective.REFUSED_KEY] = refusal
    return new_state


def _apply_stop(book: _Book, name: str, intent: OrderIntent, fill: Fill, stop: protective.ProtectiveStop | None
                ) -> tuple[protective.ProtectiveStop | None, float]:
    """A protective stop placed (``intent.kind`` stop) or cancelled (cancel): the stop that rests
    afterwards, and the units it sold — a stop that fired is the position's exit at its real fill
    price and fee (:mod:`.protective`)."""
    if intent.kind == STOP and fill.status == "open":
        return protective.ProtectiveStop(intent.client_order_id, fill.price, fill.requested or intent.amount,
                                         intent.reason), 0.0
    if fill.amount <= 0 or book.units <= 0:
        return (stop if intent.kind == STOP else None), 0.0
    book.sell(fill.amount, fill.price, fill.cost - fill.fee, intent.reason, whole=not fill.partial,
              note=f"sold by the stop order resting on the exchange at {intent.trigger or fill.price:,.8g}",
              at_ms=fill.time_ms)
    _notify_fill(book.conn, book.row, name, fill, intent.reason)
    return None, fill.amount


def _unfilled_stop_note(cancelled: OrderIntent | None, reason: str, note: str | None) -> str | None:
    """``note``, and why a stop rule's exit was a market sell although a stop order rested on the
    exchange (``cancelled``, found unfilled): a stop-limit whose price gapped past its limit
    (Binance ``STOP_LOSS_LIMIT``), or a level the exchange's own trades did not reach."""
    if cancelled is None or reason not in ("stop_loss", "trailing_stop"):
        return note
    why = (f"the stop order resting on the exchange at {cancelled.trigger or cancelled.reference_price:,.8g} had not "
           "filled (a stop-limit whose price gapped past its limit, or a level the exchange's trades did not reach): "
           "sold by a market order after the candle's close")
    return why if note is None else f"{note}; {why}"


def _notify_refused(book: _Book, name: str, intent: OrderIntent) -> None:
    row = book.row
    notify(book.conn, user_id=row.user_id, event="engine_error", title=f"{name}: stop order refused",
           message=f"{row.exchange} refused the stop-loss order at {intent.trigger or 0.0:,.8g} protecting {name}'s "
                   f"position. Until one is accepted the stop is checked on each tick only; Capandex places it again "
                   f"when its level moves up, or in an hour.", action_url=f"/flows/{row.flow_id}")


def _reconcile(book: _Book, name: str, units: float, close: float) -> None:
    """Close ``units`` the account no longer holds at the last ``close`` and tell the user."""
    book.sell(units, close, units * close * (1.0 - book.fee_rate), RECONCILED, whole=units >= book.units)
    row = book.row
    base = row.symbol.split("/")[0]
    notify(book.conn, user_id=row.user_id, event="engine_error", title=f"{name}: position reconciled",
           message=f"{name}: your {row.exchange} account no longer held {units:.8g} {base} of this flow's "
                   f"position (sold outside Capandex?). Capandex closed them in its records at the last close, "
                   f"{close:,.8g}, with exit reason '{RECONCILED}'; their pnl is an estimate.",
           action_url=f"/flows/{row.flow_id}")
