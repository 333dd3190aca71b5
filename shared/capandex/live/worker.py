"""One tick of one execution: the engine's stepper on the latest closed candles, then its orders.

**Exactly-once effect.** A tick is identified by ``(execution_id, candle_ms)``; ``tick_records``
has that pair as its primary key, in the same Postgres database and the same transaction as the
execution's state, positions and orders. We chose this over Powertools idempotency on DynamoDB:
the idempotency record and the effect commit atomically (DynamoDB would sit beside the database,
so a crash between the two commits leaves them disagreeing), it costs no extra table or network
hop, and the execution row lock (``SELECT … FOR UPDATE``) also serialises two copies of one SQS
message that arrive at once: the second sees the candle already processed and does nothing.

* **Paper**: the whole tick — stepping, fills through :class:`.orders.PaperGateway`, positions,
  orders, notifications, the new state and the tick record — is one transaction.
* **Live** (an external side effect cannot join a database transaction), a two-phase protocol:

  1. *intend*: under the row lock, step the engine, derive the orders with deterministic client
     ids, write them (``pending``), the tick record (``pending``) and the intent into the
     execution's state; commit;
  2. *act*: place each order through :class:`.orders.LiveGateway`, which looks each id up on the
     exchange first;
  3. *record*: under the lock, apply the real fills (units and prices from the exchange, not the
     simulation), close/open positions, mark the tick ``done``; commit.

  A redelivered message, or the retry after a worker died between 2 and 3, finds the pending
  intent and resumes at 2 with the same ids: the exchange answers the lookup with the order that
  was already placed, so no second order can exist. Positions are always rebuilt from what the
  exchange reports for those ids (reconciliation), and sells never exceed the free balance.
  Acting needs the intent's lease (:func:`complete_pending`): Binance accepts a filled order's
  client id again, so two workers acting at once must not both look up and place. Webhook calls
  (:mod:`.webhooks`) use the same slot, ``state.pending_tick`` with ``source`` ``webhook``; the
  next tick completes any pending intent first, also after a stop (the intent predates it).

**Stops in live mode** are checked on each tick against the closed candle (the stepper's rules:
levels relative to the real entry fill); when a level was crossed the position is sold at market
right after the close. Exchange-side stop orders were not used: one code path for every
exchange and for stop-loss, take-profit and trailing stop together (which would need OCO and
trailing orders that only some exchanges have), at the cost of up to one candle of delay.

**Positions sold outside Capandex.** A live sell reconciles with the account first
(:class:`.orders.LiveGateway`): units the account no longer holds come back as the fill's
``unheld``, and the gateway sells only what is there (or places no order when nothing tradable is
left). The unheld units are closed in our records at the last close (the tick's candle close, or
a webhook call's price), net of the flow's fee rate, with exit reason :data:`RECONCILED` — an exit
reason of live positions only, added to the engine's (:data:`capandex.engine.rules.REASONS`); its
pnl is an estimate, as Capandex does not know what the user sold for. The user gets an
``engine_error`` notification saying so; it is not a failure (the count below is untouched).

**Failures.** Both kinds write an ``engine_error`` notification and count towards
``consecutive_failures``; at ``CAPANDEX_LIVE_MAX_FAILURES`` (default 3) the execution ends in
status ``error``; a successful tick resets the count.

* *Permanent* (:data:`PERMANENT_ERRORS`): the exchange refused an order for good
  (:class:`.orders.OrderRejected`: insufficient balance, delisted symbol, invalid amount), or the
  exchange refused the request (:class:`~capandex.errors.BadRequest`, e.g. an unknown symbol;
  :class:`~capandex.errors.InvalidCredentials`), the key is gone or the flow no longer validates.
  The tick ends ``failed`` and returns: the SQS message is consumed, as a redelivery cannot succeed.
* *Transient* (everything else: timeouts, 5xx, rate limits, an order whose outcome is unknown):
  raised, so SQS redelivers the message. A candle the exchange has not published yet
  (:class:`CandleNotReady`) is raised without counting as a failure.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, insert, select, update

from capandex.db.schema import executions, flows, new_id, orders, positions, tick_records, utcnow
from capandex.errors import (
    BadRequest,
    CapandexError,
    InvalidCredentials,
    NotFound,
    UpstreamUnavailable,
    ValidationFailed,
)
from capandex.live.client_ids import client_order_id
from capandex.live.orders import NOT_HELD, Fill, OrderGateway, OrderIntent, OrderRejected, PaperGateway
from capandex.marketdata.chunks import timeframe_ms
from capandex.notifications import notify

log = logging.getLogger("capandex.live")

#: (exchange, symbol, timeframe, start_ms, end_ms) → Candles opening in [start_ms, end_ms]
CandleSource = Callable[[str, str, str, int, int], Any]
#: execution row → the gateway that places its orders (live mode)
GatewayFactory = Callable[[Any], OrderGateway]


#: failures a redelivery of the same message cannot fix (see the module docstring): recorded, then
#: the message is consumed; any other :class:`CapandexError` is raised for SQS to redeliver
PERMANENT_ERRORS: tuple[type[CapandexError], ...] = (OrderRejected, BadRequest, InvalidCredentials, NotFound,
                                                     ValidationFailed)

#: ``positions.exit_reason`` of live units closed because the account no longer held them
RECONCILED = "reconciled"


class CandleNotReady(UpstreamUnavailable):
    """The exchange does not serve the candle that just closed yet; retry in a moment."""

    code = "candle_not_ready"


@dataclass(frozen=True)
class TickOutcome:
    """What a tick did: ``status`` done | failed | skipped | duplicate | in_progress (another worker
    holds the intent's lease) | retry (only from :func:`capandex.live.ticks.run_pass`: a transient
    failure); ``fills`` recorded, ``orders`` their :meth:`Fill.to_dict` (live)."""

    execution_id: str
    candle_ms: int
    status: str
    fills: int = 0
    error: str | None = None
    orders: tuple[dict[str, Any], ...] = ()


def default_candles(exchange: str, symbol: str, timeframe: str, start_ms: int, end_ms: int) -> Any:
    """Closed candles from the market-data layer (cached), as :class:`capandex.engine.Candles`."""
    from capandex.marketdata import fetch_candles

    return fetch_candles(exchange, symbol, timeframe, start_ms, end_ms + 1)


def default_gateway(row: Any) -> OrderGateway:
    """The live gateway for an execution: the user's key from the vault, the flow's symbol."""
    from capandex.db.session import transaction
    from capandex.exchanges import get_client
    from capandex.keys.exchange import load_credentials
    from capandex.live.orders import LiveGateway

    with transaction() as conn:
        exchange_id, credentials = load_credentials(conn, user_id=row.user_id, key_id=row.exchange_key_id)
    return LiveGateway(get_client(exchange_id, credentials), row.symbol, _fee_rate(row))


def _fee_rate(row: Any) -> float:
    """The flow's ``settings.feeRate`` (a fraction; the engine's default when unset — a fee of 0
    is a real setting, not "unset") from the execution's document."""
    from capandex.engine.flow import DEFAULT_FEE

    fee = (row.state.get("document", {}).get("settings") or {}).get("feeRate")
    return DEFAULT_FEE if fee is None else float(fee)


# -- the entry point ---------------------------------------------------------------------------------
def process_tick(execution_id: str, candle_ms: int, *, candles: CandleSource | None = None,
                 gateway: GatewayFactory | None = None, engine: Any = None) -> TickOutcome:
    """Process the candle opening at ``candle_ms`` (and, in paper mode, any missed before it).

    Safe to call any number of times for the same arguments (SQS delivers at least once).
    ``candles``/``gateway``/``engine`` are injectable for tests and benchmarks. A permanent failure
    (:data:`PERMANENT_ERRORS`) is recorded and returned as ``failed`` (``error``: the rejection's
    reason or the error's code).

    Raises:
        CapandexError: a transient failure (recorded, unless the candle is just not ready yet):
            the caller must have the tick retried.
    """
    from capandex.db.session import transaction

    with transaction(engine=engine) as conn:
        row = conn.execute(select(executions).where(executions.c.id == execution_id)).first()
    pending = (row.state or {}).get("pending_tick") if row is not None else None
    # a stopped (or failed) execution still completes an intent it committed while running: its
    # orders may already be on the exchange, and only completing the intent records them
    if row is None or (row.status != "running" and not (row.mode == "live" and pending)):
        return TickOutcome(execution_id, candle_ms, "skipped")
    if pending is None and row.last_candle_ms is not None and row.last_candle_ms >= candle_ms:
        return TickOutcome(execution_id, candle_ms, "duplicate")
    try:
        if row.mode == "paper":
            return _paper_tick(row, candle_ms, candles or default_candles, engine)
        return _live_tick(row, candle_ms, candles or default_candles, gateway or default_gateway, engine)
    except CandleNotReady:
        raise  # not a failure of the flow: the exchange is a few seconds behind; just retry
    except CapandexError as exc:
        record_failure(execution_id, candle_ms, exc, engine)
        if not isinstance(exc, PERMANENT_ERRORS):
            raise
        reason = exc.reason if isinstance(exc, OrderRejected) else exc.code
        return TickOutcome(execution_id, candle_ms, "failed", error=reason)


# -- shared pieces -------------------------------------------------------------------------------------
def lock_execution(conn: Connection, execution_id: str) -> Any:
    """The execution's row, locked until ``conn``'s transaction ends (Postgres ``FOR UPDATE``;
    SQLite transactions are already serial); None when it does not exist."""
    query = select(executions).where(executions.c.id == execution_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def _claim(conn: Connection, row: Any, candle_ms: int, status: str) -> bool:
    """Insert the tick record; False when this (execution, candle) already has one."""
    from sqlalchemy.exc import IntegrityError

    try:
        with conn.begin_nested():
            conn.execute(insert(tick_records).values(execution_id=row.id, candle_ms=candle_ms, user_id=row.user_id,
                                                     status=status, created_at=utcnow()))
    except IntegrityError:
        return False
    return True


def _engine_inputs(row: Any) -> tuple[Any, Any]:
    from capandex.engine import compile_flow, validate_flow

    flow = validate_flow(row.state["document"])
    return compile_flow(flow), flow.settings


def _fetch(row: Any, source: CandleSource, first_ms: int, last_ms: int, history: int) -> Any:
    tf = timeframe_ms(row.timeframe)
    candles = source(row.exchange, row.symbol, row.timeframe, first_ms - history * tf, last_ms)
    times = candles.time
    if len(candles) == 0 or int(times[-1]) < last_ms:
        raise CandleNotReady(f"{row.exchange} has not published the {row.timeframe} candle of {last_ms} yet.")
    keep = times <= last_ms
    return candles.slice(0, int(keep.sum())) if not keep.all() else candles


def _ms_to_dt(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def write_order(conn: Connection, row: Any, intent: OrderIntent, candle_ms: int, fill: Fill | None,
                status: str) -> None:
    """Insert the intent's ``orders`` row, or update it (found by client id) with ``fill`` and ``status``."""
    values = {"exchange_order_id": fill.exchange_order_id if fill else None, "filled": fill.amount if fill else None,
              "price": fill.price if fill else intent.reference_price, "cost": fill.cost if fill else None,
              "fee": fill.fee if fill else None, "status": status}
    existing = conn.execute(select(orders.c.id).where(orders.c.client_order_id == intent.client_order_id)).first()
    if existing:
        conn.execute(update(orders).where(orders.c.id == existing.id).values(values))
    else:
        conn.execute(insert(orders).values(id=new_id("ord"), user_id=row.user_id, execution_id=row.id,
                                           client_order_id=intent.client_order_id, symbol=row.symbol,
                                           side=intent.side, amount=intent.amount, candle_ms=candle_ms,
                                           created_at=utcnow(), **values))


def _open_position(conn: Connection, row: Any, time_ms: int, fill: Fill, spent: float) -> None:
    conn.execute(insert(positions).values(
        id=new_id("pos"), user_id=row.user_id, flow_id=row.flow_id, execution_id=row.id, symbol=row.symbol,
        status="open", units=fill.amount, entry_price=fill.price, entry_time=_ms_to_dt(time_ms),
        fees=spent - fill.cost))


def _close_position(conn: Connection, row: Any, trade: Any, *, keep_open: float = 0.0) -> None:
    """Close the open position with ``trade``; with ``keep_open`` > 0 (a partial sell) the trade
    closes ``trade.units`` of it and a new open position keeps the other ``keep_open`` units."""
    open_row = conn.execute(select(positions).where(positions.c.execution_id == row.id,
                                                    positions.c.status == "open")).first()
    values = {"status": "closed", "exit_price": trade.exit_price, "exit_time": _ms_to_dt(trade.exit_time),
              "pnl": trade.pnl, "pnl_percent": trade.pnl_percent, "fees": trade.fees,
              "exit_reason": trade.exit_reason}
    if keep_open > 0 and open_row is not None:
        values["units"] = trade.units
        conn.execute(insert(positions).values(
            id=new_id("pos"), user_id=row.user_id, flow_id=row.flow_id, execution_id=row.id, symbol=row.symbol,
            status="open", units=keep_open, entry_price=open_row.entry_price, entry_time=open_row.entry_time,
            fees=(open_row.fees or 0.0) * keep_open / (open_row.units or keep_open)))
    if open_row is None:  # the entry predates this record (should not happen): keep the trade anyway
        conn.execute(insert(positions).values(
            id=new_id("pos"), user_id=row.user_id, flow_id=row.flow_id, execution_id=row.id, symbol=row.symbol,
            units=trade.units, entry_price=trade.entry_price, entry_time=_ms_to_dt(trade.entry_time), **values))
        return
    conn.execute(update(positions).where(positions.c.id == open_row.id).values(values))


def _flow_name(conn: Connection, row: Any) -> str:
    return conn.execute(select(flows.c.name).where(flows.c.id == row.flow_id)).scalar() or "Flow"


def _notify_fill(conn: Connection, row: Any, name: str, fill: Fill, reason: str) -> None:
    notify(conn, user_id=row.user_id, event="trade_executed", title="Order Filled",
           message=f"{name}: {row.symbol} {fill.side} {fill.amount:.8g} filled at {fill.price:,.8g}"
                   f" ({row.mode}, {reason})", action_url="/history")


def _finish(conn: Connection, row: Any, candle_ms: int, state: dict[str, Any], ticks: int, *,
            succeeded: bool = True) -> None:
    values = {"state": state, "last_candle_ms": candle_ms, "current_tick": row.current_tick + ticks}
    if succeeded:
        values["consecutive_failures"] = 0
    conn.execute(update(executions).where(executions.c.id == row.id).values(values))


# -- paper ----------------------------------------------------------------------------------------------
def _paper_tick(row: Any, candle_ms: int, source: CandleSource, engine: Any) -> TickOutcome:
    from capandex.config import get_settings
    from capandex.db.session import transaction
    from capandex.engine import BrokerState, step

    compiled, settings = _engine_inputs(row)
    tf = timeframe_ms(row.timeframe)
    first = max(row.last_candle_ms + tf if row.last_candle_ms is not None else candle_ms,
                candle_ms - (get_settings().live_max_catchup_candles - 1) * tf)
    candles = _fetch(row, source, first, candle_ms, compiled.history)
    window = compiled.history
    gateway = PaperGateway(settings.fee)
    fills = 0
    with transaction(engine=engine) as conn:
        row = lock_execution(conn, row.id)
        if row.status != "running" or (row.last_candle_ms is not None and row.last_candle_ms >= candle_ms):
            return TickOutcome(row.id, candle_ms, "duplicate")
        state = (BrokerState.from_dict(row.state["broker"]) if row.state.get("broker")
                 else BrokerState.start(row.initial_capital))
        name, equity, ticks = _flow_name(conn, row), row.state.get("equity", row.initial_capital), 0
        for index in range(len(candles)):
            t_ms = int(candles.time[index])
            if t_ms < first or (state.last_time is not None and t_ms <= state.last_time):
                continue
            if not _claim(conn, row, t_ms, "done"):
                continue
            result = step(compiled, candles.slice(max(0, index + 1 - window), index + 1), state, settings)
            state, equity, ticks = result.state, result.equity, ticks + 1
            fills += _record_paper_fills(conn, row, name, gateway, t_ms, result)
        _finish(conn, row, candle_ms, {**row.state, "broker": state.to_dict(), "equity": equity}, ticks)
    return TickOutcome(row.id, candle_ms, "done", fills=fills)


def _record_paper_fills(conn: Connection, row: Any, name: str, gateway: PaperGateway, t_ms: int,
                        result: Any) -> int:
    """Turn the stepper's fills in bar ``t_ms`` into orders and positions (entry first, then exit)."""
    count = 0
    state = result.state
    if result.opened:
        if state.long:
            opened_units, entry_price, spent = state.units, state.entry_price, state.entry_spent
        else:  # entered at the open and stopped out inside the same bar
            trade = result.trade
            opened_units, entry_price = trade.units, trade.entry_price
            spent = trade.units * trade.exit_price * (1.0 - gateway.fee_rate) - trade.pnl
        intent = OrderIntent(client_order_id(row.id, t_ms, "buy"), "buy", opened_units, entry_price, "signal", "buy")
        fill = gateway.place(intent)
        write_order(conn, row, intent, t_ms, fill, "filled")
        _open_position(conn, row, t_ms, fill, spent)
        _notify_fill(conn, row, name, fill, "signal")
        count += 1
    if result.trade is not None:
        trade = result.trade
        action = f"exit:{trade.exit_reason}"
        intent = OrderIntent(client_order_id(row.id, t_ms, action), "sell", trade.units, trade.exit_price,
                             trade.exit_reason, action)
        fill = gateway.place(intent)
        write_order(conn, row, intent, t_ms, fill, "filled")
        _close_position(conn, row, trade)
        _notify_fill(conn, row, name, fill, trade.exit_reason)
        count += 1
    return count


# -- live -------------------------------------------------------------------------------------------------
def _live_tick(row: Any, candle_ms: int, source: CandleSource, gateway_for: GatewayFactory,
               engine: Any) -> TickOutcome:
    """Finish a pending intent (this candle's, an older candle's or a webhook call's) first; then,
    while the execution runs, intend, act on and record this candle."""
    pending = row.state.get("pending_tick")
    resumed = None
    if pending is not None:
        resumed = complete_pending(row, pending, gateway_for, engine)
        if resumed.status == "in_progress" or pending["candleMs"] == candle_ms:
            return replace(resumed, candle_ms=candle_ms)
    if row.status != "running":  # stopped after the intent was made: only that intent completes
        return resumed or TickOutcome(row.id, candle_ms, "skipped")
    owner = uuid.uuid4().hex
    pending = _intend(row, candle_ms, source, engine, owner)
    if pending is None:
        return resumed or TickOutcome(row.id, candle_ms, "duplicate")
    return complete_pending(row, pending, gateway_for, engine, owner=owner)


def _now_ms() -> int:
    return int(time.time() * 1000)


def lease_for(owner: str) -> dict[str, Any]:
    """A lease on a pending intent for ``owner`` (see :func:`complete_pending`)."""
    from capandex.config import get_settings

    return {"owner": owner, "until": _now_ms() + get_settings().live_order_lease_seconds * 1000}


def _take_lease(execution_id: str, key: int, owner: str, engine: Any) -> str:
    """``ok`` (this worker may place the intent's orders), ``in_progress`` (another worker's lease
    is still running) or ``duplicate`` (the intent was recorded meanwhile)."""
    from capandex.db.session import transaction

    with transaction(engine=engine) as conn:
        row = lock_execution(conn, execution_id)
        pending = ((row.state or {}).get("pending_tick") if row is not None else None) or {}
        if pending.get("candleMs") != key:
            return "duplicate"
        lease = pending.get("lease") or {}
        if lease.get("owner") not in (None, owner) and lease.get("until", 0) > _now_ms():
            return "in_progress"
        state = {**row.state, "pending_tick": {**pending, "lease": lease_for(owner)}}
        conn.execute(update(executions).where(executions.c.id == execution_id).values(state=state))
    return "ok"


def complete_pending(row: Any, pending: dict[str, Any], gateway_for: GatewayFactory, engine: Any, *,
                     owner: str | None = None) -> TickOutcome:
    """Phases 2 and 3 for a committed intent (a tick's or a webhook call's): act, then record.

    The intent is leased first: while one worker holds the lease no other one places its orders,
    because lookup-first alone does not stop two *concurrent* placements — Binance accepts a reused
    ``newClientOrderId`` once the earlier order has filled, which a market order does at once.
    A worker that died leaves the lease to expire; the retry then looks each id up and places only
    what the exchange does not know. ``fills`` of the outcome counts the orders recorded.

    Raises:
        OrderRejected: an order was refused for good (recorded as a failed intent first).
        OrderOutcomeUnknown, UpstreamUnavailable: retry later (the intent stays pending).
    """
    from capandex.db.session import transaction

    key = pending["candleMs"]
    taken = _take_lease(row.id, key, owner or uuid.uuid4().hex, engine)
    if taken != "ok":
        return TickOutcome(row.id, key, taken)
    gateway = gateway_for(row)
    fills: list[tuple[OrderIntent, Fill]] = []
    rejected: OrderRejected | None = None
    for raw in pending["intents"]:
        intent = OrderIntent(**raw)
        try:
            fills.append((intent, gateway.place(intent)))
        except OrderRejected as exc:
            rejected = exc
            with transaction(engine=engine) as conn:
                write_order(conn, row, intent, order_candle(pending), None, "rejected")
            break
    with transaction(engine=engine) as conn:
        locked = lock_execution(conn, row.id)
        if ((locked.state or {}).get("pending_tick") or {}).get("candleMs") != key:
            return TickOutcome(row.id, key, "duplicate")  # another copy recorded it meanwhile
        record_pending(conn, locked, pending, fills, "failed" if rejected else "done")
    if rejected is not None:
        raise rejected
    return TickOutcome(row.id, key, "done", fills=len(fills), orders=tuple(f.to_dict() for _, f in fills))


def order_candle(pending: dict[str, Any]) -> int:
    """The ``orders.candle_ms`` of an intent's orders (a webhook call's key is not a candle)."""
    return pending.get("orderCandleMs", pending["candleMs"])


def _intend(row: Any, candle_ms: int, source: CandleSource, engine: Any, owner: str) -> dict[str, Any] | None:
    """Phase 1: step the engine and persist the orders it wants, with their client ids."""
    from capandex.db.session import transaction
    from capandex.engine import BrokerState, buy_units, rules, step

    compiled, settings = _engine_inputs(row)
    candles = _fetch(row, source, candle_ms, candle_ms, compiled.history)
    with transaction(engine=engine) as conn:
        row = lock_execution(conn, row.id)
        if row.status != "running" or row.state.get("pending_tick") or (
                row.last_candle_ms is not None and row.last_candle_ms >= candle_ms):
            return None
        if not _claim(conn, row, candle_ms, "pending"):
            return None
        before = (BrokerState.from_dict(row.state["broker"]) if row.state.get("broker")
                  else BrokerState.start(row.initial_capital))
        window = candles.slice(max(0, len(candles) - compiled.history), len(candles))
        result = step(compiled, window, before, settings)
        close = float(candles.close[-1])
        intents: list[OrderIntent] = []
        if result.trade is not None:  # a stop level was crossed inside the candle: sell now
            reason = result.trade.exit_reason
            intents.append(OrderIntent(client_order_id(row.id, candle_ms, f"exit:{reason}"), "sell", before.units,
                                       close, reason, f"exit:{reason}"))
        order = result.order
        if order is not None and order.side == "sell" and before.long and result.trade is None:
            intents.append(OrderIntent(client_order_id(row.id, candle_ms, "sell"), "sell", before.units, close,
                                       order.reason, "sell"))
        elif order is not None and order.side == "buy":
            price = float(rules.buy_fill(close, settings.slippage))
            units = buy_units(compiled, order.action, result.state.cash, price, settings)
            intents.append(OrderIntent(client_order_id(row.id, candle_ms, "buy"), "buy", units, close, "signal", "buy"))
        pending = {"candleMs": candle_ms, "source": "tick", "intents": [i.to_dict() for i in intents],
                   "before": before.to_dict(), "after": replace(result.state, pending=None).to_dict(),
                   "close": close, "entryMs": candle_ms + timeframe_ms(row.timeframe), "lease": lease_for(owner)}
        for intent in intents:
            write_order(conn, row, intent, candle_ms, None, "pending")
        conn.execute(update(executions).where(executions.c.id == row.id)
                     .values(state={**row.state, "pending_tick": pending}))
    return pending


def record_pending(conn: Connection, row: Any, pending: dict[str, Any], fills: list[tuple[OrderIntent, Fill]],
                   status: str) -> None:
    """Phase 3: the real fills decide the position; the simulation decides only peak/killed/highest.

    A tick's intent also closes its candle (tick record, ``last_candle_ms``, ``current_tick``); a
    webhook call's intent changes only the broker state (its tick record stays ``webhook``, which
    the rate limit counts).
    """
    new_state = apply_fills(conn, row, pending, fills)
    if pending.get("source") == "webhook":
        conn.execute(update(executions).where(executions.c.id == row.id).values(state=new_state))
        return
    candle_ms = pending["candleMs"]
    conn.execute(update(tick_records).where(tick_records.c.execution_id == row.id,
                                            tick_records.c.candle_ms == candle_ms).values(status=status))
    _finish(conn, row, candle_ms, new_state, 1, succeeded=status == "done")


@dataclass
class _Book:
    """The execution's positions (rows) and money (broker-state fields, quote currency; ``units``
    in base units) while :func:`apply_fills` applies real fills. ``at_ms`` is when entries open
    and exits close (``pending["entryMs"]``)."""

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

    def sell(self, units: float, price: float, proceeds: float, reason: str, *, whole: bool) -> None:
        """Close ``units`` of the open position at ``price`` for ``proceeds`` (after fees). With
        ``whole`` the position closes entirely (a complete sell: any remainder is dust); otherwise
        the rest stays open, carrying its share of the entry cost."""
        from capandex.engine.result import make_trade

        share = 1.0 if whole else min(1.0, units / self.units)
        trade = replace(make_trade(self.entry_time, self.at_ms, self.entry_price, price, units,
                                   self.entry_spent * share, proceeds, self.fee_rate, 0), exit_reason=reason)
        rest = self.units - units if share < 1.0 else 0.0
        _close_position(self.conn, self.row, trade, keep_open=rest)
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


def apply_fills(conn: Connection, row: Any, pending: dict[str, Any],
                fills: list[tuple[OrderIntent, Fill]]) -> dict[str, Any]:
    """Apply real fills to the execution: orders, positions, notifications; returns the new
    ``executions.state`` (the caller writes it). ``pending`` holds the broker state ``before`` and
    ``after`` the simulated step, the ``close`` to mark equity (and reconciled units) at and
    ``entryMs`` for new entries. A sell's ``unheld`` units are closed first, as :data:`RECONCILED`."""
    from capandex.engine import BrokerState, rules

    before = BrokerState.from_dict(pending["before"])
    after = BrokerState.from_dict(pending["after"])
    book = _Book(conn, row, pending["entryMs"], _fee_rate(row), before.cash, before.units, before.entry_time,
                 before.entry_price, before.entry_spent, after.highest if after.long else before.highest)
    name = _flow_name(conn, row)
    for intent, fill in fills:
        write_order(conn, row, intent, order_candle(pending), fill, fill.order_status)
        if fill.unheld > 0 and book.units > 0:
            _reconcile(book, name, min(fill.unheld, book.units), pending["close"])
        if fill.side == "sell" and book.units > 0 and fill.amount > 0:
            reason = intent.reason if intent.reason in rules.REASONS else "signal"
            book.sell(fill.amount, fill.price, fill.cost - fill.fee, reason, whole=not fill.partial)
        elif fill.side == "buy" and fill.amount > 0:
            book.buy(fill)
        if fill.status != NOT_HELD:
            _notify_fill(conn, row, name, fill, intent.reason)
    state = replace(after, **book.money(), pending=None)
    equity = float(rules.equity(state.cash, state.units, pending["close"]))
    new_state = {k: v for k, v in row.state.items() if k != "pending_tick"}
    new_state.update(broker=state.to_dict(), equity=equity)
    return new_state


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


# -- failures ---------------------------------------------------------------------------------------------
#: per ``pending_tick.source``: the failure notification's title, and what it could not process
_FAILED = {"tick": ("tick failed", "the candle of"), "webhook": ("webhook call failed", "the webhook call of")}


def record_failure(execution_id: str, at_ms: int, exc: CapandexError, engine: Any, *, source: str = "tick") -> None:
    """Count the failure, notify, and end the execution in ``error`` after N in a row.

    ``source`` is ``tick`` (``at_ms``: the candle's open time) or ``webhook`` (``at_ms``: the call's
    time); the notification names the one that failed.
    """
    from capandex.config import get_settings
    from capandex.db.session import transaction

    limit = get_settings().live_max_consecutive_failures
    with transaction(engine=engine) as conn:
        row = lock_execution(conn, execution_id)
        if row is None or row.status != "running":
            return
        failures = row.consecutive_failures + 1
        values: dict[str, Any] = {"consecutive_failures": failures, "error_count": row.error_count + 1,
                                  "last_error": exc.message[:500]}
        if failures >= limit:
            values.update(status="error", stopped_at=utcnow())
        conn.execute(update(executions).where(executions.c.id == execution_id).values(values))
        name = _flow_name(conn, row)
        ended = " The execution stopped after repeated failures." if failures >= limit else ""
        title, what = _FAILED[source]
        notify(conn, user_id=row.user_id, event="engine_error", title=f"{name}: {title}",
               message=f"{name} could not process {what} {_ms_to_dt(at_ms):%Y-%m-%d %H:%M} UTC: "
                       f"{exc.message}{ended}", action_url=f"/flows/{row.flow_id}")
    log.warning(title, extra={"execution_id": execution_id, "at_ms": at_ms, "code": exc.code, "failures": failures})
