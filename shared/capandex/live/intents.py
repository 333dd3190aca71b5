"""Pending intents: the orders a tick or a webhook call committed to place, from the moment they
are written down until their fills are recorded — the life cycle both callers share.

**One slot per execution.** A live execution has at most one pending intent,
``executions.state["pending_tick"]`` (:class:`PendingIntent`), whether a tick (``source`` ``tick``)
or a webhook call (``source`` ``webhook``) made it: a tick and a call never trade on the same stale
broker state, and whoever comes next completes an intent a dead worker left — the next tick
completes any pending intent first, also after a stop (the intent predates it).

**The lease** (:func:`complete_pending`). Acting needs the intent's lease: lookup-first alone does
not stop two *concurrent* placements, because Binance accepts a reused ``newClientOrderId`` once
the earlier order has filled, which a market order does at once — two workers looking the id up at
the same moment would both place it. While one worker holds the lease no other one places the
intent's orders. The lease bounds only a worker that is alive and acting:

* a worker that **gives up** (an order's outcome is unknown after a timeout, a 5xx, a 429/418, or
  any other error, also while recording what it placed) releases it before it raises
  (:func:`complete_pending`); the intent goes back
  to ``intended`` behind a short settle hold (``CAPANDEX_LIVE_ORDER_SETTLE_SECONDS``, 5 s, so an
  order the exchange did accept is visible to the next lookup), and the next delivery — the
  scheduler's next pass, a minute later — resumes it at once with the same client ids. Keeping the
  full lease after giving up once made every tick of the next minute answer ``in_progress`` while
  a stop-loss went unchecked;
* a worker that **dies** (the Lambda is killed: nothing after the kill runs) leaves its lease to
  expire (``CAPANDEX_LIVE_ORDER_LEASE_SECONDS``, above the worker's 60 s timeout), so no second
  worker acts while the first might still be sending; the retry then looks each id up and places
  only what the exchange does not know.

The life cycle (hummingbot's ``InFlightOrder``/``OrderState`` plays this part for an order) is
:class:`IntentState`: ``intended`` → ``acting`` → recorded (the slot is emptied), ``acting`` →
``intended`` when the acting worker gives up, or failed, when an order was refused for good.

**Failures** (:func:`record_failure`). Both kinds write an ``engine_error`` notification and count
towards ``consecutive_failures``; at ``CAPANDEX_LIVE_MAX_FAILURES`` (default 3) the execution ends
in status ``error``; a successful tick resets the count.

* *Permanent* (:data:`PERMANENT_ERRORS`): the exchange refused an order for good
  (:class:`~capandex.exchanges.errors.OrderRejected`: insufficient balance, delisted symbol,
  invalid amount), or the exchange refused the request (:class:`~capandex.errors.BadRequest`, e.g.
  an unknown symbol; :class:`~capandex.errors.InvalidCredentials`), the key is gone or the flow no
  longer validates. The tick ends ``failed`` and returns: the SQS message is consumed, as a
  redelivery cannot succeed.
* *Transient* (everything else: timeouts, 5xx, rate limits, an order whose outcome is unknown):
  raised, so SQS redelivers the message.

**Persisted shape.** :meth:`PendingIntent.to_dict` writes the JSON earlier releases wrote
(camelCase keys ``candleMs``, ``source``, ``intents``, ``before``, ``after``, ``close``,
``entryMs``, ``orderCandleMs`` for webhook calls, ``lease``) plus ``state``;
:meth:`PendingIntent.from_dict` reads both, so intents pending in a deployed database survive a
deploy, and an older worker still reads a newer intent.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, update
from sqlalchemy.exc import IntegrityError

from capandex.db.schema import executions, tick_records
from capandex.errors import BadRequest, CapandexError, InvalidCredentials, NotFound, ValidationFailed
from capandex.exchanges.errors import OrderRejected
from capandex.live import entries
from capandex.live.ledger import apply_fills, finish_tick, write_order
from capandex.live.orders import CANCEL, MARKET, SKIPPED, STALE, Fill, GatewayFactory, OrderIntent
from capandex.live.protective import resolve
from capandex.live.running import flow_name, lock_execution
from capandex.notifications import notify
from capandex.timeutil import from_ms, now_ms, utcnow  # tests move the lease clock by patching this module's now_ms

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from capandex.engine import BrokerState

log = logging.getLogger("capandex.live")

#: failures a redelivery of the same message cannot fix (see the module docstring): recorded, then
#: the message is consumed; any other :class:`CapandexError` is raised for SQS to redeliver
PERMANENT_ERRORS: tuple[type[CapandexError], ...] = (OrderRejected, BadRequest, InvalidCredentials, NotFound,
                                                     ValidationFailed)


@dataclass(frozen=True)
class TickOutcome:
    """What a tick (or the completion of an intent) did: ``status`` done | failed | skipped |
    duplicate | in_progress (another worker holds the intent's lease) | retry (only from
    :func:`capandex.live.ticks.run_pass`: a transient failure); ``fills`` recorded, ``orders``
    their :meth:`Fill.to_dict` (live)."""

    execution_id: str
    candle_ms: int
    status: str
    fills: int = 0
    error: str | None = None
    orders: tuple[dict[str, Any], ...] = ()


class IntentSource(StrEnum):
    """Who made the intent: a tick (``key`` is its candle's open time), a webhook call (``key`` is
    the call's negative idempotency key, :func:`capandex.live.webhooks.idempotency_key`) or the
    record of a protective stop that stopped resting on the exchange (``key``: a negative hash of
    its client id, :mod:`capandex.live.stop_sync`)."""

    TICK = "tick"
    WEBHOOK = "webhook"
    STOP = "stop"


class IntentState(StrEnum):
    """Where a pending intent is: ``intended`` (committed, its orders written ``pending``; no worker
    is placing them) or ``acting`` (a worker holds the lease and places or looks up the orders;
    after the lease expires another worker may take over). A recorded intent leaves the slot."""

    INTENDED = "intended"
    ACTING = "acting"


#: :attr:`Lease.owner` of the settle hold of a released intent: no worker owns it
RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Lease:
    """``owner`` (a worker's random id) may act on the intent until ``until_ms`` (epoch ms)."""

    owner: str
    until_ms: int

    def blocks(self, owner: str, at_ms: int) -> bool:
        """Another worker holds this lease and it has not expired at ``at_ms``."""
        return self.owner != owner and self.until_ms > at_ms


@dataclass(frozen=True, slots=True)
class PendingIntent:
    """The orders a tick or a webhook call committed to, with what recording them needs.

    Attributes:
        key: the tick's candle open time, or a webhook call's idempotency key (negative).
        source: who made it.
        orders: the orders to place, each with its deterministic client id.
        before: the broker state the orders were derived from.
        after: the simulated state after them (the real fills decide the position; this decides
            only peak, killed and highest).
        close: the last price, to mark equity and value units sold outside Capandex at.
        entry_ms: when a new position opens or a closed one ends (epoch ms).
        order_candle_ms: ``orders.candle_ms`` of its orders (a webhook call's key is not a candle).
        state: :class:`IntentState`; ``lease`` while acting.
    """

    key: int
    source: IntentSource
    orders: tuple[OrderIntent, ...]
    before: BrokerState
    after: BrokerState
    close: float
    entry_ms: int
    order_candle_ms: int
    state: IntentState = IntentState.INTENDED
    lease: Lease | None = field(default=None)

    def leased_to(self, owner: str) -> PendingIntent:
        """This intent acting under a fresh lease for ``owner``."""
        from capandex.config import get_settings

        until = now_ms() + get_settings().live_order_lease_seconds * 1000
        return replace(self, state=IntentState.ACTING, lease=Lease(owner, until))

    def released(self) -> PendingIntent:
        """This intent given back by the worker acting on it: ``intended`` again, held only for
        the settle time (``CAPANDEX_LIVE_ORDER_SETTLE_SECONDS``; no hold when it is 0)."""
        from capandex.config import get_settings

        settle_ms = get_settings().live_order_settle_seconds * 1000
        hold = Lease(RELEASED, now_ms() + settle_ms) if settle_ms > 0 else None
        return replace(self, state=IntentState.INTENDED, lease=hold)

    def to_dict(self) -> dict[str, Any]:
        """The persisted JSON (see the module docstring)."""
        data: dict[str, Any] = {"candleMs": self.key, "source": self.source.value,
                                "intents": [o.to_dict() for o in self.orders], "before": self.before.to_dict(),
                                "after": self.after.to_dict(), "close": self.close, "entryMs": self.entry_ms,
                                "state": self.state.value}
        if self.order_candle_ms != self.key:
            data["orderCandleMs"] = self.order_candle_ms
        if self.lease is not None:
            data["lease"] = {"owner": self.lease.owner, "until": self.lease.until_ms}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingIntent:
        """Read the persisted JSON, also as releases before ``state`` wrote it."""
        from capandex.engine import BrokerState

        lease = data.get("lease")
        state = data.get("state") or (IntentState.ACTING if lease else IntentState.INTENDED)
        return cls(key=int(data["candleMs"]), source=IntentSource(data.get("source", "tick")),
                   orders=tuple(OrderIntent(**o) for o in data["intents"]),
                   before=BrokerState.from_dict(data["before"]), after=BrokerState.from_dict(data["after"]),
                   close=float(data["close"]), entry_ms=int(data["entryMs"]),
                   order_candle_ms=int(data.get("orderCandleMs", data["candleMs"])), state=IntentState(state),
                   lease=Lease(str(lease.get("owner")), int(lease.get("until", 0))) if lease else None)


def pending_of(row: Any) -> PendingIntent | None:
    """The execution's pending intent, if it has one."""
    data = (row.state or {}).get("pending_tick") if row is not None else None
    return PendingIntent.from_dict(data) if data else None


def claim(conn: Connection, row: Any, key: int, status: str, *, at: dt.datetime | None = None) -> bool:
    """Insert the ``tick_records`` row of (execution, ``key``) — a candle's or a webhook call's —
    with ``status``; False when it has one already (this tick or call was handled)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(tick_records).values(execution_id=row.id, candle_ms=key, user_id=row.user_id,
                                                     status=status, created_at=at or utcnow()))
    except IntegrityError:
        return False
    return True


def commit(conn: Connection, row: Any, intent: PendingIntent) -> None:
    """Phase 1's write: the intent's orders as ``pending`` rows (a cancel has its stop's row) and
    the intent in the slot."""
    for order in intent.orders:
        if order.kind != CANCEL:
            write_order(conn, row, order, intent.order_candle_ms, None, "pending")
    conn.execute(update(executions).where(executions.c.id == row.id)
                 .values(state={**row.state, "pending_tick": intent.to_dict()}))


def _take_lease(execution_id: str, key: int, owner: str, engine: Engine | None) -> str:
    """``ok`` (this worker may place the intent's orders), ``in_progress`` (another worker's lease
    is still running) or ``duplicate`` (the intent was recorded meanwhile)."""
    from capandex.db.session import transaction

    with transaction(engine=engine) as conn:
        row = lock_execution(conn, execution_id)
        pending = pending_of(row)
        if pending is None or pending.key != key:
            return "duplicate"
        if pending.lease is not None and pending.lease.blocks(owner, now_ms()):
            return "in_progress"
        state = {**row.state, "pending_tick": pending.leased_to(owner).to_dict()}
        conn.execute(update(executions).where(executions.c.id == execution_id).values(state=state))
    return "ok"


def complete_pending(row: Any, pending: PendingIntent, gateway_for: GatewayFactory, engine: Engine | None, *,
                     owner: str | None = None) -> TickOutcome:
    """Phases 2 and 3 for a committed intent (a tick's or a webhook call's): act, then record.

    The intent is leased first (see the module docstring); ``owner`` is the worker that already
    holds the lease (it committed the intent). ``fills`` of the outcome counts the orders recorded.

    Raises:
        OrderRejected: an order was refused for good (recorded as a failed intent first).
        OrderOutcomeUnknown, UpstreamUnavailable: retry later (the intent stays pending).
    """
    from capandex.db.session import transaction

    owner = owner or uuid.uuid4().hex
    taken = _take_lease(row.id, pending.key, owner, engine)
    if taken != "ok":
        return TickOutcome(row.id, pending.key, taken)
    try:
        fills, rejected = _act(row, pending, gateway_for, engine)
        with transaction(engine=engine) as conn:
            locked = lock_execution(conn, row.id)
            current = pending_of(locked)
            if current is None or current.key != pending.key:
                return TickOutcome(row.id, pending.key, "duplicate")  # another copy recorded it meanwhile
            record_pending(conn, locked, pending, fills, "failed" if rejected else "done")
    except Exception:
        # giving up — acting failed, or recording what was placed did: release the intent for the
        # next delivery, which finds the placed orders by their ids (a dead worker never gets here;
        # its lease expires instead)
        _give_back(row.id, pending.key, owner, engine)
        raise
    if rejected is not None:
        raise rejected
    return TickOutcome(row.id, pending.key, "done", fills=len(fills), orders=tuple(f.to_dict() for _, f in fills))


def _act(row: Any, pending: PendingIntent, gateway_for: GatewayFactory, engine: Engine | None
         ) -> tuple[list[tuple[OrderIntent, Fill]], OrderRejected | None]:
    """Phase 2: place (or find) each order in turn, as :func:`capandex.live.protective.resolve`
    completes it from the fills before it; stop at the first one refused for good (written
    ``rejected``), which is returned with the fills before it. A buy whose signal went stale
    (:func:`capandex.live.entries.is_fresh`, checked as the intent is acted on) is only looked up:
    :data:`~capandex.live.orders.STALE` when the exchange does not know it."""
    from capandex.db.session import transaction
    from capandex.marketdata.chunks import timeframe_ms

    gateway = gateway_for(row)
    fresh = entries.is_fresh(pending.entry_ms, timeframe_ms(row.timeframe))
    fills: list[tuple[OrderIntent, Fill]] = []
    for planned in pending.orders:
        order = resolve(planned, fills)  # a stop's level from the entry's fill; nothing left to sell
        if order is None:
            fills.append((planned, Fill.nothing(planned, SKIPPED)))
            continue
        if order.kind == MARKET and order.side == "buy" and not fresh:
            # resumed too late to open a position (:mod:`.entries`): only an order placed before
            # is recorded
            fills.append((order, gateway.find(order) or Fill.nothing(order, STALE)))
            continue
        try:
            fills.append((order, gateway.place(order)))
        except OrderRejected as exc:
            with transaction(engine=engine) as conn:
                write_order(conn, row, order, pending.order_candle_ms, None, "rejected")
            return fills, exc
    return fills, None


def _give_back(execution_id: str, key: int, owner: str, engine: Engine | None) -> None:
    """Release ``owner``'s lease on the intent ``key`` (:meth:`PendingIntent.released`), unless
    the intent was recorded or taken over meanwhile."""
    from capandex.db.session import transaction

    with transaction(engine=engine) as conn:
        row = lock_execution(conn, execution_id)
        pending = pending_of(row)
        if pending is None or pending.key != key or pending.lease is None or pending.lease.owner != owner:
            return
        conn.execute(update(executions).where(executions.c.id == execution_id)
                     .values(state={**row.state, "pending_tick": pending.released().to_dict()}))


def record_pending(conn: Connection, row: Any, pending: PendingIntent, fills: list[tuple[OrderIntent, Fill]],
                   status: str) -> None:
    """Phase 3: the real fills decide the position (:func:`.ledger.apply_fills`); the simulation
    decides only peak/killed/highest.

    A tick's intent also closes its candle (tick record ``status``, ``last_candle_ms``,
    ``current_tick``); a webhook call's or a stop's intent changes only the broker state (its tick
    record keeps its status: ``webhook``, which the rate limit counts, or ``stop``).
    """
    new_state = apply_fills(conn, row, pending, fills)
    if pending.source is not IntentSource.TICK:
        conn.execute(update(executions).where(executions.c.id == row.id).values(state=new_state))
        return
    conn.execute(update(tick_records).where(tick_records.c.execution_id == row.id,
                                            tick_records.c.candle_ms == pending.key).values(status=status))
    finish_tick(conn, row, pending.key, new_state, 1, succeeded=status == "done")


#: per :class:`IntentSource`: the failure notification's title, and what it could not process
_FAILED = {IntentSource.TICK: ("tick failed", "the candle of"),
           IntentSource.WEBHOOK: ("webhook call failed", "the webhook call of"),
           IntentSource.STOP: ("stop order check failed", "its stop order at")}


def record_failure(execution_id: str, at_ms: int, exc: CapandexError, engine: Engine | None, *,
                   source: IntentSource = IntentSource.TICK) -> None:
    """Count the failure, notify, and end the execution in ``error`` after N in a row.

    ``source`` is a tick (``at_ms``: the candle's open time) or a webhook call (``at_ms``: the
    call's time); the notification names the one that failed.
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
        name = flow_name(conn, row)
        ended = " The execution stopped after repeated failures." if failures >= limit else ""
        title, what = _FAILED[source]
        moment = from_ms(at_ms)
        notify(conn, user_id=row.user_id, event="engine_error", title=f"{name}: {title}",
               message=f"{name} could not process {what} {moment:%Y-%m-%d %H:%M} UTC: {exc.message}{ended}",
               action_url=f"/flows/{row.flow_id}")
    log.warning(title, extra={"execution_id": execution_id, "at_ms": at_ms, "code": exc.code, "failures": failures})
