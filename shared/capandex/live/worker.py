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

  1. *intend* (here): under the row lock, step the engine, derive the orders with deterministic
     client ids, write them (``pending``), the tick record (``pending``) and the intent
     (:class:`.intents.PendingIntent`) into the execution's state; commit;
  2. *act*: place each order through :class:`.orders.LiveGateway`, which looks each id up on the
     exchange first (:func:`.intents.complete_pending`, under the intent's lease);
  3. *record*: under the lock, apply the real fills (units and prices from the exchange, not the
     simulation; :mod:`.ledger`), close/open positions, mark the tick ``done``; commit.

  A redelivered message, or the retry after a worker died between 2 and 3, finds the pending
  intent and resumes at 2 with the same ids: the exchange answers the lookup with the order that
  was already placed, so no second order can exist. Positions are always rebuilt from what the
  exchange reports for those ids (reconciliation), and sells never exceed the free balance. A
  webhook call's intent (:mod:`.webhooks`) shares the one slot; the next tick completes it first.

**Stops in live mode** are checked on each tick against the closed candle (the stepper's rules:
levels relative to the real entry fill); when a level was crossed the position is sold at market
right after the close. Where the exchange supports it, the stop-loss and trailing stop also rest on
the exchange as a stop order (:mod:`.protective`): the tick's orders then include placing, moving
and cancelling it, and a fill the candles do not show is recorded first (:mod:`.stop_sync`).

**Catching up.** A tick processes every unprocessed closed candle up to its own, oldest first
(:mod:`.catchup`): paper in one transaction; live, the candles that need no order together in one
transaction (no intent, no exchange request) and each candle that does through its own
intend → act → record, decided from the real fills of the one before. A live buy whose signal is
stale by the time it is processed or sent is not placed (:mod:`.entries`); exits always are.

**Failures** are recorded and sorted into permanent (consumed) and transient (raised for SQS to
redeliver) as :mod:`.intents` describes; a candle the exchange has not published yet
(:class:`CandleNotReady`) is raised without counting as a failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from capandex.db.schema import executions
from capandex.errors import CapandexError, UpstreamUnavailable
from capandex.exchanges.errors import OrderRejected
from capandex.live import catchup, entries, protective, stop_sync
from capandex.live.history import history_window
from capandex.live.intents import (
    PERMANENT_ERRORS,
    IntentSource,
    PendingIntent,
    TickOutcome,
    claim,
    commit,
    complete_pending,
    pending_of,
    record_failure,
)
from capandex.live.ledger import finish_tick, record_paper_fills, write_order
from capandex.live.orders import STALE, GatewayFactory, OrderIntent, PaperGateway, default_gateway
from capandex.live.running import broker_state, compiled_flow, flow_name, lock_execution
from capandex.marketdata.chunks import timeframe_ms

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from capandex.engine import BrokerState, Candles, CompiledFlow, Signals, StepResult

__all__ = ["CandleNotReady", "CandleSource", "default_candles", "process_tick"]

#: (exchange, symbol, timeframe, start_ms, end_ms) → Candles opening in [start_ms, end_ms]
CandleSource = Callable[[str, str, str, int, int], "Candles"]


class CandleNotReady(UpstreamUnavailable):
    """The exchange does not serve the candle that just closed yet; retry in a moment."""

    code = "candle_not_ready"


def default_candles(exchange: str, symbol: str, timeframe: str, start_ms: int, end_ms: int) -> Candles:
    """Closed candles from the market-data layer (cached), as :class:`capandex.engine.Candles`;
    downloading what the store lacks for at most :data:`capandex.live.history.FILL_SECONDS`.

    Raises:
        FillTimeUp: the window is not all in the store yet (what was downloaded is kept).
    """
    from capandex.live.history import FILL_SECONDS
    from capandex.marketdata.candles import fetch_candles

    return fetch_candles(exchange, symbol, timeframe, start_ms, end_ms + 1, fill_seconds=FILL_SECONDS)


# -- the entry point ---------------------------------------------------------------------------------
def process_tick(execution_id: str, candle_ms: int, *, candles: CandleSource | None = None,
                 gateway: GatewayFactory | None = None, engine: Engine | None = None) -> TickOutcome:
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
    from capandex.marketdata.candles import FillTimeUp

    with transaction(engine=engine) as conn:
        row = conn.execute(select(executions).where(executions.c.id == execution_id)).first()
    pending = pending_of(row)
    # a stopped (or failed) execution still completes an intent it committed while running: its
    # orders may already be on the exchange, and only completing the intent records them
    if row is None or (row.status != "running" and not (row.mode == "live" and pending)):
        return TickOutcome(execution_id, candle_ms, "skipped")
    if pending is None and row.last_candle_ms is not None and row.last_candle_ms >= candle_ms:
        return TickOutcome(execution_id, candle_ms, "duplicate")
    try:
        if row.mode == "paper":
            return _paper_tick(row, candle_ms, candles or default_candles, engine)
        return _live_tick(row, candle_ms, pending, candles or default_candles, gateway or default_gateway, engine)
    except (CandleNotReady, FillTimeUp):
        raise  # not a failure of the flow: the exchange is a few seconds behind, or the store still fills
    except CapandexError as exc:
        record_failure(execution_id, candle_ms, exc, engine)
        if not isinstance(exc, PERMANENT_ERRORS):
            raise
        reason = exc.reason if isinstance(exc, OrderRejected) else exc.code
        return TickOutcome(execution_id, candle_ms, "failed", error=reason)


def _fetch(row: Any, source: CandleSource, first_ms: int, last_ms: int, history: int) -> Candles:
    """Candles from ``history`` before ``first_ms`` to ``last_ms`` (never before 1970: the
    exchange client clamps further, to the exchange's first candle)."""
    tf = timeframe_ms(row.timeframe)
    candles = source(row.exchange, row.symbol, row.timeframe, max(0, first_ms - history * tf), last_ms)
    times = candles.time
    if len(candles) == 0 or int(times[-1]) < last_ms:
        raise CandleNotReady(f"{row.exchange} has not published the {row.timeframe} candle of {last_ms} yet.")
    keep = times <= last_ms
    return candles.slice(0, int(keep.sum())) if not keep.all() else candles


# -- paper ----------------------------------------------------------------------------------------------
def _paper_tick(row: Any, candle_ms: int, source: CandleSource, engine: Engine | None) -> TickOutcome:
    """Every unprocessed candle up to ``candle_ms`` (at most :func:`.catchup.bound`), stepped and
    filled in one transaction."""
    from capandex.db.session import transaction
    from capandex.engine import step

    compiled = compiled_flow(row)
    settings = compiled.flow.settings
    span = catchup.plan(row.last_candle_ms, candle_ms, timeframe_ms(row.timeframe))
    if span is None:
        return TickOutcome(row.id, candle_ms, "duplicate")
    candles = _fetch(row, source, span.first_ms, span.last_ms, history_window(compiled))
    # evaluated once for the whole pass (causal: each step reads its own bar), not once per
    # missed candle: a catch-up of n candles costs one evaluation of the window, not n
    signals = compiled.signals(candles)
    gateway = PaperGateway(settings.fee)
    fills = 0
    with transaction(engine=engine) as conn:
        locked = lock_execution(conn, row.id)
        if locked is None:  # stopped and forgotten while its candles downloaded (see _forget_empty_runs)
            return TickOutcome(row.id, candle_ms, "skipped")
        row = locked
        if row.status != "running" or (row.last_candle_ms is not None and row.last_candle_ms >= span.last_ms):
            return TickOutcome(row.id, candle_ms, "duplicate")
        state = broker_state(row)
        name, equity, ticks = flow_name(conn, row), row.state.get("equity", row.initial_capital), 0
        for index in range(len(candles)):
            t_ms = int(candles.time[index])
            if t_ms < span.first_ms or (state.last_time is not None and t_ms <= state.last_time):
                continue
            if not claim(conn, row, t_ms, "done"):
                continue
            result = step(compiled, candles.slice(0, index + 1), state, settings, signals=signals)
            state, equity, ticks = result.state, result.equity, ticks + 1
            fills += record_paper_fills(conn, row, name, gateway, t_ms, result)
        lag = catchup.record_lag(conn, row, span.left)
        finish_tick(conn, row, span.last_ms, {**row.state, "broker": state.to_dict(), "equity": equity, **lag}, ticks)
    return TickOutcome(row.id, candle_ms, "done", fills=fills)


# -- live -------------------------------------------------------------------------------------------------
def _live_tick(row: Any, candle_ms: int, pending: PendingIntent | None, source: CandleSource,
               gateway_for: GatewayFactory, engine: Engine | None) -> TickOutcome:
    """Finish a pending intent (an older candle's or a webhook call's) first; then, while the
    execution runs, step every unprocessed candle up to ``candle_ms`` in turn (:mod:`.catchup`):
    the candles that need no order in one transaction, each one that does through its own
    intend → act → record, decided from the real fills of the one before."""
    done: list[TickOutcome] = []
    if pending is not None:
        resumed = complete_pending(row, pending, gateway_for, engine)
        if resumed.status == "in_progress":
            return replace(resumed, candle_ms=candle_ms)
        done.append(resumed)
        row = _reread(row.id, engine)
    if row.status != "running":  # stopped after the intent was made: only that intent completes
        return _summary(row.id, candle_ms, done) if done else TickOutcome(row.id, candle_ms, "skipped")
    tf = timeframe_ms(row.timeframe)
    span = catchup.plan(row.last_candle_ms, candle_ms, tf)
    synced = stop_sync.sync(row, gateway_for, engine, span.first_ms if span else None, tf)
    if synced is not None and synced.status == "in_progress":  # another worker records the stop
        return replace(synced, candle_ms=candle_ms)
    if synced is not None and synced.status == "done":  # it filled (or vanished) where no candle's exit finds it
        done.append(synced)
    if span is None:
        return _summary(row.id, candle_ms, done) if done else TickOutcome(row.id, candle_ms, "duplicate")
    compiled = compiled_flow(row)
    candles = _fetch(row, source, span.first_ms, span.last_ms, history_window(compiled))
    signals = compiled.signals(candles)  # once for every candle of the catch-up (see _paper_tick)
    quiet = 0
    for _ in range((span.last_ms - span.first_ms) // tf + 1):  # each pass records a candle at least
        owner = uuid.uuid4().hex
        intent, recorded = _advance(row.id, compiled, candles, signals, span, engine, owner)
        quiet += recorded
        if intent is None:
            break
        outcome = complete_pending(row, intent, gateway_for, engine, owner=owner)
        if outcome.status != "done":
            return replace(outcome, candle_ms=candle_ms)
        done.append(outcome)
    _close_tick(row.id, span, engine)
    return _summary(row.id, candle_ms, done, quiet=quiet)


def _reread(execution_id: str, engine: Engine | None) -> Any:
    from capandex.db.session import transaction

    with transaction(engine=engine) as conn:
        return conn.execute(select(executions).where(executions.c.id == execution_id)).one()


def _close_tick(execution_id: str, span: catchup.CatchUp, engine: Engine | None) -> None:
    """After the tick's last candle: how far behind the execution still is, and the one notice of
    the buys it skipped as stale (:mod:`.entries`)."""
    from capandex.db.session import transaction

    with transaction(engine=engine) as conn:
        row = lock_execution(conn, execution_id)
        if row is not None and row.last_candle_ms is not None and row.last_candle_ms >= span.last_ms:
            state = entries.notify_skipped(conn, row, {**row.state, **catchup.record_lag(conn, row, span.left)})
            conn.execute(update(executions).where(executions.c.id == execution_id).values(state=state))


def _summary(execution_id: str, candle_ms: int, done: list[TickOutcome], *, quiet: int = 0) -> TickOutcome:
    """One outcome for the intents a tick completed (their fills and orders together) and the
    ``quiet`` candles it recorded without an order; ``duplicate`` when it did neither."""
    return TickOutcome(execution_id, candle_ms, "done" if done or quiet else "duplicate",
                       fills=sum(o.fills for o in done), orders=tuple(order for o in done for order in o.orders))


def _advance(execution_id: str, compiled: CompiledFlow, candles: Candles, signals: Signals, span: catchup.CatchUp,
             engine: Engine | None, owner: str) -> tuple[PendingIntent | None, int]:
    """Phase 1, in one transaction under the execution's lock: step the unprocessed candles of
    ``span`` in order (``signals``: the flow's, evaluated over ``candles``). Candles that need no
    order are recorded at once (their tick records, the broker state, ``last_candle_ms``): a long
    catch-up costs no exchange request and no intent for them. The first candle that needs orders
    is committed as the execution's pending intent, leased to ``owner``, and returned for acting
    (None when every candle was recorded, or another worker holds the execution's intent), with
    the number of candles recorded without an order."""
    from capandex.db.session import transaction
    from capandex.engine import step

    settings = compiled.flow.settings
    with transaction(engine=engine) as conn:
        row = lock_execution(conn, execution_id)
        if row is None or row.status != "running" or pending_of(row) is not None:
            return None, 0
        tf = timeframe_ms(row.timeframe)
        quiet = _Quiet(row, broker_state(row))
        first = span.first_ms if row.last_candle_ms is None else max(span.first_ms, row.last_candle_ms + 1)
        for index in range(int(candles.time.searchsorted(first)), len(candles)):
            t_ms = int(candles.time[index])
            before = quiet.state
            result = step(compiled, candles.slice(0, index + 1), before, settings, signals=signals)
            close = float(candles.close[index])
            orders = _decide(row.id, t_ms, compiled, before, result, close, late=catchup.is_late(t_ms, tf))
            orders, stale = _without_stale_entry(orders, t_ms + tf, tf)
            if protective.enabled(row):
                orders = _protect(row.id, t_ms, compiled, before, result, orders, protective.current(row),
                                  move=t_ms == span.last_ms, refusal=protective.refused(row))
            if not orders:
                if not claim(conn, row, t_ms, "done"):
                    break
                quiet.record(conn, t_ms, result, close, stale)
                continue
            recorded = quiet.ticks
            row = quiet.flush(conn)
            if not claim(conn, row, t_ms, "pending"):
                return None, recorded
            intent = PendingIntent(t_ms, IntentSource.TICK, orders, before, replace(result.state, pending=None),
                                   close, t_ms + tf, t_ms).leased_to(owner)
            commit(conn, row, intent)
            return intent, recorded
        recorded = quiet.ticks
        quiet.flush(conn)
    return None, recorded


@dataclass
class _Quiet:
    """The candles :func:`_advance` steps without an order, recorded together: the broker state
    they leave, the last one's open time and close, and the buys they skipped as stale."""

    row: Any
    state: BrokerState
    last_ms: int | None = None
    equity: float | None = None
    ticks: int = 0
    stale: list[tuple[int, OrderIntent]] = field(default_factory=list)

    def record(self, conn: Connection, t_ms: int, result: StepResult, close: float,
               stale: OrderIntent | None) -> None:
        from capandex.engine import rules

        self.state = replace(result.state, pending=None)  # no order: the simulated state is the real one
        self.last_ms, self.ticks = t_ms, self.ticks + 1
        self.equity = float(rules.equity(self.state.cash, self.state.units, close))
        if stale is not None:
            write_order(conn, self.row, stale, t_ms, None, STALE)
            self.stale.append((t_ms, stale))

    def flush(self, conn: Connection) -> Any:
        """Write what the quiet candles changed; the execution's row as it is now."""
        if self.ticks:
            state: dict[str, Any] = {**self.row.state, "broker": self.state.to_dict(), "equity": self.equity}
            for t_ms, _ in self.stale:
                state = entries.noted(state, t_ms)
            assert self.last_ms is not None
            finish_tick(conn, self.row, self.last_ms, state, self.ticks)
            self.row = lock_execution(conn, self.row.id)
            self.ticks, self.stale = 0, []
        return self.row


def _without_stale_entry(orders: tuple[OrderIntent, ...], signal_ms: int, tf_ms: int
                         ) -> tuple[tuple[OrderIntent, ...], OrderIntent | None]:
    """``orders`` without their buy when its signal (at ``signal_ms``) is too old to act on now
    (:mod:`.entries`), and that buy (None: kept, or none)."""
    buy = next((o for o in orders if o.side == "buy"), None)
    if buy is None or entries.is_fresh(signal_ms, tf_ms):
        return orders, None
    return tuple(o for o in orders if o is not buy), buy


def _decide(execution_id: str, candle_ms: int, compiled: CompiledFlow, before: BrokerState, result: StepResult,
            close: float, *, late: bool = False) -> tuple[OrderIntent, ...]:
    """The market orders the step asks for, at the candle's close: a stop's exit (a level was
    crossed inside the candle: sell now; ``late``: the candle was processed after a newer one had
    settled, which the trade's note says), a signal's sell, or a buy sized by the flow's rule."""
    from capandex.engine import buy_units, rules

    orders: list[OrderIntent] = []
    if result.trade is not None:
        reason = result.trade.exit_reason
        note = catchup.late_exit_note(reason, result.trade.exit_price, candle_ms) if late else None
        orders.append(OrderIntent.for_action(execution_id, candle_ms, f"exit:{reason}", "sell", before.units, close,
                                             reason, note=note))
    order = result.order
    if order is not None and order.side == "sell" and before.long and result.trade is None:
        orders.append(OrderIntent.for_action(execution_id, candle_ms, "sell", "sell", before.units, close,
                                             order.reason))
    elif order is not None and order.side == "buy":
        settings = compiled.flow.settings
        price = float(rules.buy_fill(close, settings.slippage))
        units = buy_units(compiled, order.action, result.state.cash, price, settings)
        orders.append(OrderIntent.for_action(execution_id, candle_ms, "buy", "buy", units, close, "signal"))
    return tuple(orders)


def _protect(execution_id: str, candle_ms: int, compiled: CompiledFlow, before: BrokerState, result: StepResult,
             orders: tuple[OrderIntent, ...], stop: protective.ProtectiveStop | None, *, move: bool = True,
             refusal: tuple[float, int] | None = None) -> tuple[OrderIntent, ...]:
    """``orders`` with the protective stop's own (:mod:`.protective`): an exit cancels the resting
    stop first (it reserves what the sell sells); an entry is followed by a stop; a position that
    stays open gets its stop moved up to the trailing level (or placed again when none rests) —
    only when ``move``: a catch-up moves it once, at its last candle (the level is the highest
    since the entry, so one move reaches it; moving it at every missed candle would cost a cancel
    and a placement each, while the tick checks each candle's range itself)."""
    risk = compiled.flow.risk
    selling = before.long and any(o.side == "sell" for o in orders)
    out = [protective.cancel(stop)] if selling and stop is not None else []
    out += orders
    if any(o.side == "buy" for o in orders):
        entry_stop = protective.after_entry(execution_id, candle_ms, risk)
        out += [entry_stop] if entry_stop is not None else []
    elif move and before.long and not selling and before.entry_price is not None:
        out += protective.moved(execution_id, candle_ms, stop, risk, before.entry_price, result.state.highest,
                                result.state.units, refusal=refusal, at_ms=candle_ms)
    return tuple(out)
