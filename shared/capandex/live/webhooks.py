"""The webhook trigger: a secret URL per flow that fires the running execution's actions.

``POST /api/webhooks/{flowId}/{token}`` needs no cookie: the token (32 random bytes, url-safe) is
the credential. Only its SHA-256 is stored (``flows.webhook_token_hash``), compared with
:func:`hmac.compare_digest`; a wrong token and an unknown flow are the same 404. The token is
shown once, by ``POST /api/flows/{flowId}/webhook``, which also rotates it (the old URL dies).

Body (at most ``CAPANDEX_WEBHOOK_MAX_BODY_BYTES``, default 8 KiB): empty, plain text ``buy`` /
``sell`` (TradingView's alert message), or JSON ``{"action": "buy"|"sell", "id": "..."}``. Without
an action the call toggles: flat → the flow's first buy action, long → sell.

**Once per call.** The idempotency key is the caller's call id (``X-Webhook-Id`` header or the
body's ``id``) or else SHA-256(body) + the current UTC minute, so an alert retried by the sender
within the minute fires once, and the same alert text a minute later fires again. The key is
claimed as a ``tick_records`` row of the execution (``candle_ms`` = minus a 62-bit hash of the key,
so it can never collide with a candle time) in the transaction that records the fill; the order
goes through the same gateway and deterministic client id as a tick (action ``webhook:<side>``).
Rate limit: ``CAPANDEX_WEBHOOK_CALLS_PER_MINUTE`` accepted calls per flow per minute (429). A
duplicate and a call over the limit are answered before the exchange is asked for a price, so
repeated calls cost no exchange traffic; a body nested deeper than 32 levels is a 400 before the
token is even looked up (:mod:`capandex.safejson`).

Live mode uses the tick's intend → act → record protocol (:mod:`capandex.live.worker`) and its one
pending-intent slot (:class:`capandex.live.intents.PendingIntent`, ``source`` ``webhook``), through
the same functions as the tick (:func:`~capandex.live.intents.claim`,
:func:`~capandex.live.running.broker_state`, :func:`~capandex.live.intents.commit`,
:func:`~capandex.live.intents.complete_pending`): the claim and the intent commit together; the
orders are placed under the intent's lease (lookup by client id first); the fills are recorded.
If the worker dies between placing and recording, the sender's retry of the same call — or the
execution's next tick, whichever comes first after the lease expired — resumes the intent: the
lookup finds the order already placed and the fill is recorded, so the exchange holds one order
and the database knows it. A call that arrives while another intent is pending completes that
one first (or, if its lease is held, answers 503). A retry while the first request still holds
the lease answers ``duplicate``. Paper mode records everything in one transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from capandex import safejson
from capandex.db.owned import owned_row
from capandex.db.schema import executions, flows, tick_records
from capandex.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UpstreamUnavailable,
    ValidationFailed,
)
from capandex.errors import field_problem as problem
from capandex.exchanges.errors import OrderRejected
from capandex.live import protective
from capandex.live.intents import (
    IntentSource,
    PendingIntent,
    TickOutcome,
    claim,
    commit,
    complete_pending,
    pending_of,
    record_failure,
    record_pending,
)
from capandex.live.orders import GatewayFactory, OrderIntent, PaperGateway, default_gateway
from capandex.live.running import broker_state, compiled_flow, fee_rate, lock_execution
from capandex.marketdata.chunks import timeframe_ms
from capandex.timeutil import epoch_ms, utcnow

if TYPE_CHECKING:
    from capandex.engine import BrokerState

#: (exchange, symbol) → last traded price, for paper fills and live sizing
PriceSource = Callable[[str, str], float]


@dataclass(frozen=True, slots=True)
class _Claim:
    """What :func:`_claim_and_intend` found: ``kind`` ``resume`` (this call's intent is pending: a
    retry after a crash), ``busy`` (another intent is pending), ``duplicate`` (this call was
    handled), ``empty`` (claimed; nothing to do, e.g. buy while long) or ``claimed`` (``pending``
    is the call's intent)."""

    kind: str
    pending: PendingIntent | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _has_webhook_trigger(document: dict[str, Any]) -> bool:
    return any(n.get("type") == "trigger" and (n.get("data") or {}).get("kind") == "webhook"
               for n in document.get("nodes") or [])


def rotate_token(conn: Any, *, user_id: uuid.UUID, flow_id: str) -> dict[str, str]:
    """Give the flow a new webhook token; returns ``{"url", "token"}`` (shown this once)."""
    from capandex.config import get_settings

    row = owned_row(conn, flows, flow_id, user_id=user_id, columns=(flows.c.document,))
    if not _has_webhook_trigger(row.document):
        raise ValidationFailed("The flow has no webhook trigger.", details=[problem(
            "nodes", "add a trigger node with kind 'webhook' to use a webhook URL")])
    token = secrets.token_urlsafe(32)
    conn.execute(update(flows).where(flows.c.id == flow_id, flows.c.user_id == user_id)
                 .values(webhook_token_hash=_hash(token)))
    path = f"/api/webhooks/{flow_id}/{token}"
    base = (get_settings().public_api_url or "").rstrip("/")
    return {"url": base + path, "token": token}


async def read_body(request: Any) -> bytes:
    """The body, refusing more than the webhook limit while it streams in."""
    from capandex.config import get_settings

    limit = get_settings().webhook_max_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Webhook bodies are limited to {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_call(body: bytes) -> tuple[str | None, str | None]:
    """``(action, call id)`` from an empty, plain-text or JSON body."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None, None
    if text.startswith("{"):
        try:  # strict and depth-bounded: 1,300 nested objects must not exhaust the parser's stack
            data = safejson.loads(text)
        except safejson.UnsafeJson as exc:
            raise BadRequest(f"The webhook body is not acceptable JSON: {exc.reason}.",
                             details=[problem(f"body.{exc.path}" if exc.path else "body", exc.reason)]) from None
        action, call_id = data.get("action"), data.get("id")
        if call_id is not None and not isinstance(call_id, str | int):
            raise ValidationFailed("Invalid input: id.", details=[problem("id", "must be a string")])
        call_id = str(call_id) if call_id is not None else None
    else:
        action, call_id = text.lower(), None
    if action is not None and action not in ("buy", "sell"):
        raise ValidationFailed("Invalid input: action.", details=[problem("action", "must be buy or sell")])
    return action, call_id


def idempotency_key(body: bytes, call_id: str | None, now: dt.datetime) -> int:
    """A negative 62-bit key (never a candle time) for this call; see the module docstring."""
    basis = f"id:{call_id}" if call_id else f"body:{hashlib.sha256(body).hexdigest()}:{now:%Y%m%d%H%M}"
    return -(int.from_bytes(hashlib.sha256(basis.encode()).digest()[:8], "big") >> 2) - 1


def default_price(exchange: str, symbol: str) -> float:
    from capandex.exchanges import get_client

    return float(get_client(exchange).ticker(symbol)["last"])


def fire(*, flow_id: str, token: str, body: bytes, call_id: str | None = None,
         price: PriceSource | None = None, gateway: GatewayFactory | None = None,
         now: dt.datetime | None = None) -> dict[str, Any]:
    """Validate the token and fire the running execution's action once for this call."""
    from capandex.db.session import transaction

    action, body_id = parse_call(body)
    now = now or utcnow()
    key = idempotency_key(body, call_id or body_id, now)
    with transaction() as conn:
        row = _authorised_execution(conn, flow_id, token)
        if (row.state or {}).get("replay"):
            # an alert happens now: at today's price it has no place in a replay of the past
            raise Conflict("This execution replays the past, driven by `capandex tick --at`; webhook alerts fire "
                           "executions that run on the real clock.")
        # a duplicate or a call over the rate limit is answered before the exchange is asked for a
        # price, so repeated calls cost no exchange traffic (the claim below re-checks under the lock)
        if _already_handled(conn, row, key):
            return _answer(row.id, True, [])
        _check_rate(conn, row.id, now)
    reference = (price or default_price)(row.exchange, row.symbol)
    if row.mode == "paper":
        with transaction() as conn:
            return _fire_paper(conn, row.id, key, action, reference, now)
    return _fire_live(row, key, action, reference, now, gateway or default_gateway)


def _fire_live(row: Any, key: int, action: str | None, reference: float, now: dt.datetime,
               gateway_for: GatewayFactory) -> dict[str, Any]:
    """Intend (commit the call's orders as the execution's pending intent), act, record — the
    tick's protocol, sharing its one pending-intent slot, so a tick and a call never trade on the
    same stale broker state, and a retry (or the next tick) resumes an intent a dead worker left."""
    from capandex.db.session import transaction

    owner = uuid.uuid4().hex
    with transaction() as conn:
        found = _claim_and_intend(conn, row.id, key, action, reference, now, owner=owner)
    if found.kind == "busy":  # a tick's (or another call's) intent first: it decides our state
        assert found.pending is not None
        if _complete(row, found.pending, gateway_for, None).status == "in_progress":
            raise UpstreamUnavailable("Another order of this flow is being placed; retry in a minute.")
        with transaction() as conn:
            found = _claim_and_intend(conn, row.id, key, action, reference, now, owner=owner)
        if found.kind == "busy":
            raise UpstreamUnavailable("Another order of this flow is being placed; retry in a minute.")
    if found.kind in ("duplicate", "empty") or found.pending is None:
        return _answer(row.id, found.kind == "duplicate", [])
    outcome = _complete(row, found.pending, gateway_for, owner if found.kind == "claimed" else None)
    if outcome.status != "done":  # in progress in another request, or recorded by it meanwhile
        return _answer(row.id, True, [])
    return _answer(row.id, False, list(outcome.orders))


def _complete(row: Any, pending: PendingIntent, gateway_for: GatewayFactory, owner: str | None) -> TickOutcome:
    """:func:`capandex.live.intents.complete_pending`; a refused order also counts as a failure."""
    try:
        return complete_pending(row, pending, gateway_for, None, owner=owner)
    except OrderRejected as exc:
        # the intent may be a tick's, which this call completes before its own
        record_failure(row.id, pending.order_candle_ms, exc, None, source=pending.source)
        raise


def _authorised_execution(conn: Connection, flow_id: str, token: str) -> Any:
    stored = conn.execute(select(flows.c.webhook_token_hash).where(flows.c.id == flow_id)).scalar()
    # compare even when the flow is unknown, so timing does not tell which flows exist
    if not hmac.compare_digest(_hash(token), stored or "0" * 64) or stored is None:
        raise NotFound("No such webhook.")
    row = conn.execute(select(executions).where(executions.c.flow_id == flow_id,
                                                executions.c.status == "running")).first()
    if row is None:
        raise Conflict("The flow is not running; start it before sending alerts.")
    return row


def _already_handled(conn: Connection, row: Any, key: int) -> bool:
    """Whether this call was claimed already and is not the pending intent a retry may resume."""
    pending = pending_of(row)
    if pending is not None and pending.key == key:
        return False
    return conn.execute(select(tick_records.c.candle_ms).where(
        tick_records.c.execution_id == row.id, tick_records.c.candle_ms == key)).first() is not None


def _check_rate(conn: Connection, execution_id: str, now: dt.datetime, *, counting_this_call: bool = False) -> None:
    """:class:`RateLimited` when the flow took ``CAPANDEX_WEBHOOK_CALLS_PER_MINUTE`` calls in the last
    minute (besides this one, once it is claimed)."""
    from capandex.config import get_settings

    recent = conn.execute(select(func.count()).select_from(tick_records).where(
        tick_records.c.execution_id == execution_id, tick_records.c.status == "webhook",
        tick_records.c.created_at >= now - dt.timedelta(minutes=1))).scalar_one()
    limit = get_settings().webhook_calls_per_minute
    if recent - int(counting_this_call) >= limit:
        raise RateLimited(f"At most {limit} webhook calls per minute for this flow.", retry_after=60)


def _claim_and_intend(conn: Connection, execution_id: str, key: int, action: str | None, reference: float,
                      now: dt.datetime, *, owner: str | None, fill_ms: int | None = None) -> _Claim:
    """Under the execution's lock, claim the call and decide its orders (:class:`_Claim`); with
    ``owner`` the intent is also committed as the execution's pending intent, leased to ``owner``,
    its orders written ``pending``. Its fills are dated ``fill_ms`` (default ``now``)."""
    row = lock_execution(conn, execution_id)
    pending = pending_of(row)
    if pending is not None:
        return _Claim("resume" if pending.key == key else "busy", pending)
    if row is None or row.status != "running":  # stopped (and maybe forgotten) since the token check
        raise Conflict("The flow is not running; start it before sending alerts.")
    if not claim(conn, row, key, "webhook", at=now):
        return _Claim("duplicate")
    _check_rate(conn, execution_id, now, counting_this_call=True)
    state = broker_state(row)
    orders = _with_stop(row, key, _decide(row, key, action, state, reference))
    if not orders:
        return _Claim("empty")
    at_ms = epoch_ms(now) if fill_ms is None else fill_ms
    intent = PendingIntent(key, IntentSource.WEBHOOK, orders, state, replace(state, pending=None), reference,
                           at_ms, at_ms)
    if owner is not None:
        intent = intent.leased_to(owner)
        commit(conn, row, intent)
    return _Claim("claimed", intent)


def _decide(row: Any, key: int, action: str | None, state: BrokerState, reference: float) -> tuple[OrderIntent, ...]:
    """The call's order: ``action``, or without one the toggle (flat → the flow's first buy
    action, long → sell); none when it cannot apply (a buy while long or killed, a sell while flat)."""
    from capandex.engine import buy_units, rules

    compiled = compiled_flow(row)
    settings = compiled.flow.settings
    side = action or ("sell" if state.long else "buy")
    if side == "buy" and not state.long and not state.killed:
        fill = float(rules.buy_fill(reference, settings.slippage))
        units = buy_units(compiled, 0, state.cash, fill, settings)
        return (OrderIntent.for_action(row.id, key, "webhook:buy", "buy", units, fill, "signal"),)
    if side == "sell" and state.long:
        fill = float(rules.sell_fill(reference, settings.slippage))
        return (OrderIntent.for_action(row.id, key, "webhook:sell", "sell", state.units, fill, "signal"),)
    return ()


def _with_stop(row: Any, key: int, orders: tuple[OrderIntent, ...]) -> tuple[OrderIntent, ...]:
    """A live call's orders with its protective stop's (:mod:`capandex.live.protective`): a sell
    cancels the resting stop first, a buy is followed by a stop."""
    if not orders or not protective.enabled(row):
        return orders
    stop = protective.current(row)
    if orders[0].side == "sell":
        return (protective.cancel(stop), *orders) if stop is not None else orders
    entry_stop = protective.after_entry(row.id, key, compiled_flow(row).flow.risk)
    return (*orders, entry_stop) if entry_stop is not None else orders


def _fire_paper(conn: Connection, execution_id: str, key: int, action: str | None, reference: float,
                now: dt.datetime, *, fill_ms: int | None = None) -> dict[str, Any]:
    """Paper mode: claim, fill and record in the caller's one transaction (the fills dated
    ``fill_ms``, default ``now``)."""
    found = _claim_and_intend(conn, execution_id, key, action, reference, now, owner=None, fill_ms=fill_ms)
    if found.kind != "claimed" or found.pending is None:
        return _answer(execution_id, found.kind != "empty", [])
    row = lock_execution(conn, execution_id)
    gateway = PaperGateway(fee_rate(row))
    fills = [(order, gateway.place(order)) for order in found.pending.orders]
    record_pending(conn, row, found.pending, fills, "done")
    return _answer(execution_id, False, [f.to_dict() for _, f in fills])


def close_paper_position(conn: Connection, execution_id: str, now: dt.datetime) -> list[dict[str, Any]]:
    """Sell a running paper execution's open position at its last processed close (slippage and
    fee as any exit), through the webhook's paper path; the fills (none when flat).

    A replay's sale is dated when that close happened (the end of its last processed candle), not
    ``now``: its trades live in the replayed past, and a sale years later would stretch its equity
    curve (and the flow's performance) across the gap."""
    row = lock_execution(conn, execution_id)
    state = broker_state(row)
    if row.status != "running" or state.units <= 0.0:
        return []
    last_close = (float(row.state["equity"]) - state.cash) / state.units  # equity = cash + units × close
    key = idempotency_key(b"", f"stop:{execution_id}", now)
    fill_ms = None
    if row.state.get("replay") and row.last_candle_ms is not None:
        fill_ms = int(row.last_candle_ms) + timeframe_ms(row.timeframe)
    orders: list[dict[str, Any]] = _fire_paper(conn, execution_id, key, "sell", last_close, now,
                                               fill_ms=fill_ms)["orders"]
    return orders


def _answer(execution_id: str, duplicate: bool, fills: list[dict[str, Any]]) -> dict[str, Any]:
    return {"accepted": True, "duplicate": duplicate, "executionId": execution_id, "orders": fills}
