"""Executions: start, stop and status of a flow running in paper or live mode.

An execution row carries everything a tick needs: the flow document it was started with (so an
edit to the flow does not change a running execution), the engine's broker state
(:class:`capandex.engine.BrokerState` as JSON) and the last candle it processed. A partial unique
index (``executions_one_running_per_flow``) makes "one running execution per flow" a database
fact, not a check that two concurrent starts could both pass.

A start first checks that the flow's exchange lists its symbol (:func:`check_market`, the cached
symbol list), outside the start's transaction: a request must not hold a database transaction
(and its pooled connection) open while it waits on an exchange. Live mode starts only on an
exchange where orders can be found by client order id (:data:`capandex.exchanges.orders.CLIENT_ORDER_IDS`):
without that lookup an order could not be placed exactly once.

The tick, the webhook trigger and the ledger read a running execution through
:mod:`capandex.live.running`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from capandex.db.owned import owned_row
from capandex.db.schema import exchange_keys, executions, flows, new_id, orders, positions
from capandex.errors import (
    BadRequest,
    Conflict,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
    ValidationFailed,
    field_problem,
)
from capandex.live.running import flow_name
from capandex.live.timeframes import last_closed_open
from capandex.marketdata.chunks import TIMEFRAME_MS
from capandex.notifications import notify
from capandex.timeutil import epoch_ms, from_ms, iso_utc, utcnow

if TYPE_CHECKING:
    from capandex.engine.document import Flow

MODES = ("paper", "live")


def _flow(conn: Connection, user_id: uuid.UUID, flow_id: str) -> Any:
    # the lock serialises concurrent starts of one flow
    return owned_row(conn, flows, flow_id, user_id=user_id, lock=True)


def _market(document: dict[str, Any]) -> tuple[str, str, str, int]:
    """The flow's exchange, symbol, timeframe (and its ms); 422 naming each missing setting."""
    settings = document.get("settings") or {}
    problems = [field_problem(f"settings.{key}", "required to run the flow")
                for key in ("exchange", "symbol", "timeframe") if not settings.get(key)]
    if problems:
        raise ValidationFailed("The flow's settings lack " + ", ".join(p["field"] for p in problems) + ".",
                               details=problems)
    if settings["timeframe"] not in TIMEFRAME_MS:  # ticks could never fetch its candles
        raise ValidationFailed(f"Unsupported timeframe {settings['timeframe']!r}.", details=[field_problem(
            "settings.timeframe", f"must be one of {', '.join(TIMEFRAME_MS)} to run the flow")])
    return settings["exchange"], settings["symbol"], settings["timeframe"], TIMEFRAME_MS[settings["timeframe"]]


def check_market(*, user_id: uuid.UUID, flow_id: str, replay_from: dt.datetime | None = None) -> tuple[str, str]:
    """The flow's ``(exchange, symbol)``, once the exchange is known to list the symbol.

    Reads the flow in its own short transaction, then asks the exchange's active spot symbols
    (:func:`capandex.exchanges.market.list_symbols`, cached for 5 minutes) with no transaction open.
    Call it before the start's transaction and pass the result to :func:`start_execution`.

    Raises:
        NotFound: no such flow for this user.
        ValidationFailed: the flow does not validate or needs more history than a tick keeps
            (:mod:`capandex.live.history`), lacks exchange/symbol/timeframe, its exchange is not offered
            (``settings.exchange``), or the exchange does not list the symbol or has halted it
            (``settings.symbol``).
        UpstreamUnavailable: the exchange could not be asked (unreachable, 5xx, rate limited, or
            an unreadable answer): without its listing the flow cannot be started safely.

    A paper replay whose first candle is in the candle store (e.g. imported with ``capandex
    candles import``) is not checked: it replays stored history, offline if need be.
    """
    from capandex.db.session import transaction
    from capandex.engine import compile_flow, validate_flow
    from capandex.live.history import history_window

    with transaction(user_id) as conn:
        document = owned_row(conn, flows, flow_id, user_id=user_id, columns=(flows.c.document,)).document
    exchange, symbol, timeframe, tf_ms = _market(document)
    # a flow that cannot run is refused before the exchange is asked
    flow = validate_flow(document)
    _check_candle_by_candle(flow)
    history_window(compile_flow(flow))
    if replay_from is not None and _stored(exchange, symbol, timeframe, last_closed_open(
            epoch_ms(replay_from), tf_ms)):
        return exchange, symbol
    if symbol not in _listed_symbols(exchange):
        raise ValidationFailed(f"{exchange} does not list {symbol} (or has halted trading in it).", details=[
            field_problem("settings.symbol", f"not a tradable spot symbol on {exchange}", exchange=exchange)])
    return exchange, symbol


def _stored(exchange: str, symbol: str, timeframe: str, open_ms: int) -> bool:
    """Whether the candle store holds the candle opening at ``open_ms`` (no exchange is asked)."""
    from capandex.marketdata import get_store
    from capandex.marketdata.candles import load_chunk
    from capandex.marketdata.chunks import chunk_key, chunk_span_ms

    span = chunk_span_ms(timeframe)
    chunk = load_chunk(get_store(), chunk_key(exchange, symbol, timeframe, open_ms // span * span), timeframe)
    return chunk is not None and chunk.covers(open_ms, open_ms + 1) and bool((chunk.time == open_ms).any())


def _listed_symbols(exchange: str) -> list[str]:
    """The exchange's active spot symbols (cached); 422 for an exchange Capandex does not offer."""
    from capandex.exchanges.market import list_symbols
    from capandex.exchanges.registry import resolve

    try:
        resolve(exchange)
    except BadRequest as exc:
        problem = field_problem("settings.exchange", "not a supported exchange")
        raise ValidationFailed(exc.message, details=[problem]) from exc
    try:
        return list_symbols(exchange)
    except (UpstreamUnavailable, UpstreamError, RateLimited) as exc:
        raise UpstreamUnavailable(f"{exchange} could not be reached to check the flow's symbol, so the flow was "
                                  "not started; retry in a minute.") from exc


def _check_candle_by_candle(flow: Flow) -> None:
    """Refuse a flow the live engine cannot evaluate candle by candle.

    OBV is a running total since the first candle of whatever series it is given: a backtest's
    OBV depends on where its range starts, and no trailing window of candles (what each tick
    evaluates) reproduces it. Rather than trade on values no backtest shows, the start is refused
    (422 naming each OBV node); a backtest of the flow still runs.
    """
    obv = [node.id for node in flow.nodes.values() if node.type == "indicator" and node.kind == "obv"]
    if obv:
        raise ValidationFailed(
            "The flow uses OBV, a running total since the first candle of the series: paper and live executions "
            "evaluate a trailing window of candles each tick, which cannot reproduce it. Backtest the flow, or "
            "replace the OBV node to run it.",
            details=[field_problem("data.kind", "OBV cannot run in paper or live mode", nodeId=node_id)
                     for node_id in obv])


def _check_live_exchange(conn: Connection, exchange: str) -> None:
    from capandex.exchanges.orders import CLIENT_ORDER_IDS
    from capandex.exchanges.registry import active_ccxt_ids

    if active_ccxt_ids(conn).get(exchange) not in CLIENT_ORDER_IDS:
        supported = ", ".join(CLIENT_ORDER_IDS)
        raise ValidationFailed(f"Live trading is not available on {exchange}: Capandex cannot find its orders by "
                               f"client order id, which placing each order exactly once needs.", details=[
                                   field_problem("settings.exchange", f"live mode needs one of: {supported}")])


def _stops_on_exchange(conn: Connection, exchange: str, document: dict[str, Any], flow: Flow) -> bool:
    """Whether the live execution keeps its stop-loss on the exchange (:mod:`.protective`); 422 on
    ``settings.stopsOnExchange: true`` where the exchange offers no stop orders Capandex can use."""
    from capandex.exchanges.registry import active_ccxt_ids
    from capandex.exchanges.stops import STOP_ORDERS, supports_stop_orders
    from capandex.live.protective import enabled_at_start

    supported = supports_stop_orders(active_ccxt_ids(conn).get(exchange, ""))
    if (document.get("settings") or {}).get("stopsOnExchange") is True and not supported:
        raise ValidationFailed(f"{exchange} offers no stop orders Capandex can keep a stop-loss with; its stops are "
                               "checked on each tick.", details=[field_problem(
                                   "settings.stopsOnExchange",
                                   f"stop orders on the exchange need one of: {', '.join(STOP_ORDERS)}")])
    return enabled_at_start(document, flow.risk, supported)


def _check_key(conn: Connection, user_id: uuid.UUID, key_id: str | None, exchange: str) -> None:
    if not key_id:
        raise ValidationFailed("Live mode needs an exchange key.",
                               details=[field_problem("exchangeKeyId", "required for mode 'live'")])
    key = owned_row(conn, exchange_keys, key_id, user_id=user_id,
                    columns=(exchange_keys.c.exchange, exchange_keys.c.is_valid))
    if key.exchange != exchange:
        raise ValidationFailed(f"The key is for {key.exchange}; the flow trades on {exchange}.",
                               details=[field_problem("exchangeKeyId", f"must be a {exchange} key")])
    if key.is_valid is False:
        raise ValidationFailed("The exchange rejected this key; update it first.",
                               details=[field_problem("exchangeKeyId", "the key failed validation")])


def start_execution(conn: Connection, *, user_id: uuid.UUID, flow_id: str, mode: str,
                    exchange_key_id: str | None = None, now_ms: int | None = None,
                    checked_market: tuple[str, str] | None = None,
                    replay_from: dt.datetime | None = None) -> dict[str, Any]:
    """Start ``flow_id`` in ``mode``; its first tick is the first candle that closes after now
    (after ``replay_from``, a past instant, for a paper execution replaying history).

    ``checked_market`` is what :func:`check_market` returned before this transaction (the API
    always passes it); without it the symbol is not checked against the exchange (tests, benchmarks).

    Raises:
        NotFound: no such flow (or key) for this user.
        ValidationFailed: the flow does not validate, lacks exchange/symbol/timeframe, uses OBV
            (:func:`_check_candle_by_candle`), or live mode lacks a valid key of the flow's
            exchange or runs on an exchange without client-order-id lookups (``settings.exchange``).
        Conflict: the flow already has a running execution, or its exchange/symbol changed since
            ``checked_market`` was checked.
    """
    from capandex.engine import validate_flow

    if mode not in MODES:
        raise ValidationFailed("Invalid input: mode.", details=[field_problem("mode", "must be paper or live")])
    if replay_from is not None and mode != "paper":
        raise ValidationFailed("Only a paper execution can replay the past.",
                               details=[field_problem("replayFrom", "only with mode 'paper'")])
    if replay_from is not None:  # a replay is driven by `capandex tick --at`, never by the clock's passes
        now_ms = epoch_ms(replay_from)
    flow = _flow(conn, user_id, flow_id)
    document = dict(flow.document)
    exchange, symbol, timeframe, tf_ms = _market(document)
    if checked_market is not None and checked_market != (exchange, symbol):
        raise Conflict("The flow's exchange or symbol changed while it was being started; start it again.")
    validated = validate_flow(document)
    _check_candle_by_candle(validated)
    stops_on_exchange = False
    if mode == "live":
        _check_live_exchange(conn, exchange)
        _check_key(conn, user_id, exchange_key_id, exchange)
        stops_on_exchange = _stops_on_exchange(conn, exchange, document, validated)
    if conn.execute(select(executions.c.id).where(executions.c.flow_id == flow_id,
                                                  executions.c.status == "running")).first():
        raise Conflict("The flow already has a running execution; stop it first.")
    _forget_empty_runs(conn, user_id, flow_id)
    now = utcnow()
    now_ms = epoch_ms(now) if now_ms is None else now_ms
    execution_id = new_id("exec")
    row = {"id": execution_id, "user_id": user_id, "flow_id": flow_id, "mode": mode, "status": "running",
           "exchange": exchange, "symbol": symbol, "timeframe": timeframe,
           "exchange_key_id": exchange_key_id if mode == "live" else None,
           "initial_capital": validated.settings.capital,
           "state": {"document": document, "broker": None, "equity": validated.settings.capital,
                     "stopsOnExchange": stops_on_exchange, **({"replay": True} if replay_from is not None else {})},
           "current_tick": 0, "last_candle_ms": last_closed_open(now_ms, tf_ms),
           "error_count": 0, "consecutive_failures": 0, "started_at": now}
    try:
        with conn.begin_nested():  # the partial unique index decides a race between two starts
            conn.execute(insert(executions).values(row))
    except IntegrityError as exc:
        raise Conflict("The flow already has a running execution; stop it first.") from exc
    notify(conn, user_id=user_id, event="engine_start", title=f"{flow.name} started",
           message=f"{flow.name} is running in {mode} mode on {exchange} {symbol} {timeframe}.",
           action_url=f"/flows/{flow_id}")
    return {"executionId": execution_id, "status": "running", "mode": mode, "startedAt": iso_utc(now)}


def _forget_empty_runs(conn: Connection, user_id: uuid.UUID, flow_id: str) -> None:
    """Delete the flow's executions the user stopped that never processed a candle and hold no order
    or position: nothing happened in them (a failed one stays: it says why it failed). Each row keeps
    a copy of the flow document (up to 256 KiB), and a user could start and stop a flow ~30 times a
    second, so without this the table grew by megabytes a second with rows no one needs. A tick still
    downloading a deleted run's first candles finds no row and ends ``skipped``."""
    conn.execute(delete(executions).where(
        executions.c.user_id == user_id, executions.c.flow_id == flow_id, executions.c.status == "stopped",
        executions.c.current_tick == 0, ~exists().where(orders.c.execution_id == executions.c.id),
        ~exists().where(positions.c.execution_id == executions.c.id)))


def _execution(conn: Connection, user_id: uuid.UUID, execution_id: str, *, lock: bool = False) -> Any:
    return owned_row(conn, executions, execution_id, user_id=user_id, lock=lock)


def close_position(*, user_id: uuid.UUID, execution_id: str) -> None:
    """Sell a running paper execution's open position at its last close (``closePosition: true``
    of a stop). Runs in its own (server) transaction before the stop's: only the server writes
    orders and positions.

    Raises:
        NotFound: no such execution for this user.
        ValidationFailed: a live execution: its position is in the user's exchange account, and
            selling it is an order the user places there (the stop leaves it untouched).
    """
    from capandex.db.session import transaction
    from capandex.live.webhooks import close_paper_position

    with transaction() as conn:
        row = _execution(conn, user_id, execution_id)
        if row.mode == "live":
            raise ValidationFailed("closePosition applies to paper executions; a live position stays in your "
                                   "exchange account: sell it there.",
                                   details=[field_problem("closePosition", "only for paper executions")])
        close_paper_position(conn, row.id, utcnow())


def stop_execution(conn: Connection, *, user_id: uuid.UUID, execution_id: str) -> dict[str, Any]:
    """Stop a running execution (idempotent: stopping a stopped one returns its status).

    An open position is left as it is unless the stop asked ``closePosition`` (:func:`close_position`,
    paper only): a live position stays in the user's account (selling it is a trading decision the
    user makes), a paper one stays marked at its last close. The stop notification says which.
    """
    row = _execution(conn, user_id, execution_id, lock=True)
    if row.status == "running":
        conn.execute(update(executions).where(executions.c.id == execution_id, executions.c.user_id == user_id)
                     .values(status="stopped", stopped_at=utcnow()))
        name = flow_name(conn, row)
        held = position_counts(conn, [row.id])[row.id]["open"]
        kept = "" if not held else (
            " Its open position stays open, marked at its last close (stop with closePosition: true to sell it)."
            if row.mode == "paper" else " Its open position stays in your exchange account; sell it there if you "
                                        "want out." + _resting_stop(row))
        notify(conn, user_id=user_id, event="engine_stop", title=f"{name} stopped",
               message=f"{name} ({row.mode}) was stopped after {row.current_tick} ticks.{kept}",
               action_url=f"/flows/{row.flow_id}")
    return execution_status(conn, user_id=user_id, execution_id=execution_id)


def _resting_stop(row: Any) -> str:
    stop = (row.state or {}).get("stop")
    return "" if not stop else (f" Its stop-loss order at {float(stop['level']):,.8g} stays on the exchange with it; "
                                "cancel it there if you do not want it.")


def position_counts(conn: Connection, execution_ids: list[str]) -> dict[str, dict[str, int]]:
    """``{execution id: {"open": n, "closed": n}}`` for the given executions."""
    out: dict[str, dict[str, int]] = {e: {"open": 0, "closed": 0} for e in execution_ids}
    if not execution_ids:
        return out
    rows = conn.execute(select(positions.c.execution_id, positions.c.status, func.count())
                        .where(positions.c.execution_id.in_(execution_ids))
                        .group_by(positions.c.execution_id, positions.c.status))
    for execution_id, status, count in rows:
        out[execution_id][status] = int(count)
    return out


def pnl_of(row: Any) -> tuple[float, float]:
    """(pnl, pnlPercent) of an execution, marked at its last processed close."""
    equity = float((row.state or {}).get("equity", row.initial_capital))
    pnl = equity - row.initial_capital
    return pnl, (pnl / row.initial_capital * 100.0 if row.initial_capital else 0.0)


def execution_status(conn: Connection, *, user_id: uuid.UUID, execution_id: str) -> dict[str, Any]:
    """The reference's status object plus ``mode``, ``errorCount``, ``lastError``, ``lagCandles``
    (settled candles not processed yet: :func:`capandex.live.catchup.lag_candles`), ``replay`` and
    ``lastCandle`` (a replay's position: the open time of its last processed candle) and ``parity``
    (the summary of the latest parity report, :mod:`capandex.live.parity`; None before one)."""
    from capandex.live.catchup import lag_candles

    row = _execution(conn, user_id, execution_id)
    counts = position_counts(conn, [row.id])[row.id]
    pnl, pnl_percent = pnl_of(row)
    return {"executionId": row.id, "flowId": row.flow_id, "status": row.status, "mode": row.mode,
            "startedAt": iso_utc(row.started_at), "stoppedAt": iso_utc(row.stopped_at),
            "currentTick": row.current_tick, "pnl": round(pnl, 8), "pnlPercent": round(pnl_percent, 8),
            "openPositions": counts["open"], "totalTrades": counts["closed"],
            "errorCount": row.error_count, "lastError": row.last_error, "lagCandles": lag_candles(row),
            "replay": bool((row.state or {}).get("replay")),
            "lastCandle": None if row.last_candle_ms is None else iso_utc(from_ms(row.last_candle_ms)),
            "parity": (row.state or {}).get("parity")}
