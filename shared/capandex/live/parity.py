"""The parity report: what an execution really did, beside the backtest of the same flow over the
candles it saw (``GET /api/engine/parity?executionId=``; its summary also in the status).

**The backtest.** The flow the execution was started with, run by :func:`capandex.engine.backtest`'s
simulator over the execution's candles — from its first processed candle to its last — plus the
trailing history its first tick evaluated (:func:`capandex.live.history.history_window`), with no
signal taken before its first candle (the execution did not exist then), at the flow's capital, fee
and slippage. Indicators are seeded one history earlier than each tick's window, so recursive ones
(EMA, RSI, ATR, MACD) agree to ~1e-12 relative: decisions differ only on a near-exact tie.

**Matching.** Trades are matched by their *signal candle*: the candle whose close decided the entry
(the fill is at the next open in both: entry time − one timeframe). Real positions split by a
partial fill are one trade. A backtest trade still open at the last candle (``end_of_data``) is
compared with the real open position (entry only).

Per matched trade: the backtest's and the real entry/exit (time, price, reason), units, fees and
pnl; realised slippage ``entrySlippage`` = real entry / backtest entry − 1 (positive: paid more) and
``exitSlippage`` = 1 − real exit / backtest exit (positive: received less), as fractions;
``pnlDifference`` = real pnl − backtest pnl (quote currency). A backtest trade with no real one is
``missing``, with ``reason`` when its buy was not placed: ``stale_signal`` (its candle was processed
too late to open a position, :mod:`capandex.live.entries`) or ``rejected`` (the exchange refused
the order); a real one with no backtest trade is ``extra`` (e.g. a webhook call, a position
reconciled differently).

**Tracking error** (summary): the root mean square, over every trade of the report (matched,
missing as a real pnl of 0, extra as a backtest pnl of 0), of real pnl − backtest pnl, in quote
currency; ``trackingErrorPercent`` is it as a percentage of the initial capital. A paper execution's
report shows zero differences (paper fills are the stepper's, which the backtest equals).

**Cost.** At most ``CAPANDEX_PARITY_MAX_CANDLES`` candles (1,000,000: about 0.1 s of backtest for a
small flow), and the flow over them within a backtest's memory budget and the in-request time
budget by the engine's cost model (nodes × candles, :mod:`capandex.engine.cost`); otherwise a 422
naming ``executionId``. The response lists the ``limit`` most recent trades (the summary counts all).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from capandex.db.owned import owned_row
from capandex.db.schema import executions, orders, positions, tick_records
from capandex.errors import ValidationFailed, field_problem
from capandex.live.history import history_window
from capandex.live.running import compiled_flow
from capandex.marketdata.chunks import timeframe_ms
from capandex.timeutil import epoch_ms, from_ms, iso_utc

if TYPE_CHECKING:
    from capandex.engine import Candles, CompiledFlow
    from capandex.live.worker import CandleSource


@dataclass(frozen=True, slots=True)
class Side:
    """One side's trade (the backtest's or the real one): times epoch ms; money in quote currency."""

    entry_ms: int
    entry_price: float
    units: float
    fees: float
    pnl: float | None
    exit_ms: int | None
    exit_price: float | None
    exit_reason: str | None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"entryTime": iso_utc(from_ms(self.entry_ms)), "entryPrice": self.entry_price, "units": self.units,
                "fees": self.fees, "pnl": self.pnl,
                "exitTime": iso_utc(from_ms(self.exit_ms)) if self.exit_ms is not None else None,
                "exitPrice": self.exit_price, "exitReason": self.exit_reason, "note": self.note}


def report(*, user_id: uuid.UUID, execution_id: str, limit: int = 500, candles: CandleSource | None = None
           ) -> dict[str, Any]:
    """The parity report of the user's execution (see the module docstring); its summary is kept
    for the status.

    Raises:
        NotFound: no such execution for this user.
        ValidationFailed: the execution saw more candles than ``CAPANDEX_PARITY_MAX_CANDLES``.
        UpstreamUnavailable: the candles could not be loaded.
    """
    from capandex.db.session import transaction
    from capandex.live.worker import default_candles

    with transaction(user_id) as conn:
        row = owned_row(conn, executions, execution_id, user_id=user_id)
        real = _real_trades(conn, row)
        unplaced = _unplaced_buys(conn, row)
        first = conn.execute(select(func.min(tick_records.c.candle_ms)).where(
            tick_records.c.execution_id == row.id, tick_records.c.candle_ms >= 0)).scalar()
    tf = timeframe_ms(row.timeframe)
    bt: list[Side] = []
    last = row.last_candle_ms
    if first is not None and last is not None and last >= first:
        compiled = compiled_flow(row)
        history = history_window(compiled)
        _check_size(compiled, (last - first) // tf + 1 + history)
        data = (candles or default_candles)(row.exchange, row.symbol, row.timeframe, first - history * tf, last)
        bt = _backtest(compiled, data, first)
    out = _compare(row, bt, real, tf, first, limit, unplaced)
    with transaction() as conn:  # the server's role: users cannot write an execution's state
        current = conn.execute(select(executions.c.state).where(executions.c.id == row.id)).scalar_one()
        conn.execute(update(executions).where(executions.c.id == row.id)
                     .values(state={**current, "parity": out["summary"]}))
    return out


def _check_size(compiled: CompiledFlow, candles: int) -> None:
    """:class:`ValidationFailed` naming ``executionId`` when the report's backtest is over its
    candle bound, or over what one request may spend by the engine's cost model (nodes × candles:
    the memory budget of every backtest, and the in-request time budget)."""
    from capandex.config import get_settings
    from capandex.engine import cost

    settings = get_settings()
    bound = settings.parity_max_candles
    if candles > bound:
        raise ValidationFailed(f"The execution has processed {candles} candles; a parity report covers at most "
                               f"{bound}.", details=[field_problem("executionId", f"more than {bound} candles")])
    work = cost.estimate(compiled, candles)
    if work.bytes > cost.MAX_EVALUATION_BYTES or work.seconds > settings.backtest_sync_budget_s:
        why = (f"{work.nodes} computing nodes over {candles:,} candles need about {work.bytes / 2**20:,.0f} MiB and "
               f"{work.seconds:,.1f} s; a report may use {cost.MAX_EVALUATION_BYTES / 2**20:,.0f} MiB and "
               f"{settings.backtest_sync_budget_s:,.0f} s")
        raise ValidationFailed(f"The parity report is too large: {why}.",
                               details=[field_problem("executionId", why)])


def _real_trades(conn: Connection, row: Any) -> list[Side]:
    """The execution's positions, the parts of one split by a partial fill joined (by entry time)."""
    rows = conn.execute(select(positions).where(positions.c.execution_id == row.id)
                        .order_by(positions.c.entry_time, positions.c.exit_time)).all()
    joined: dict[int, list[Any]] = {}
    for position in rows:
        joined.setdefault(epoch_ms(position.entry_time), []).append(position)
    trades = []
    for entry_ms, parts in joined.items():
        closed = [p for p in parts if p.status == "closed"]
        still_open = len(closed) < len(parts)
        last = closed[-1] if closed and not still_open else None
        units = sum(float(p.units) for p in parts)
        exit_value = sum(float(p.units) * float(p.exit_price) for p in closed)
        trades.append(Side(entry_ms, float(parts[0].entry_price), units, sum(float(p.fees or 0.0) for p in parts),
                           sum(float(p.pnl or 0.0) for p in closed) if last is not None else None,
                           epoch_ms(last.exit_time) if last is not None else None,
                           exit_value / units if last is not None and units else None,
                           last.exit_reason if last is not None else None,
                           "; ".join(p.note for p in closed if p.note) or None))
    return trades


#: ``orders.status`` of a buy that was not placed → the ``reason`` of the backtest trade it misses
MISSING_REASONS = {"stale": "stale_signal", "rejected": "rejected"}


def _unplaced_buys(conn: Connection, row: Any) -> dict[int, str]:
    """Signal candle (open time) → why the execution's buy of that candle was not placed
    (:data:`MISSING_REASONS`)."""
    rows = conn.execute(select(orders.c.candle_ms, orders.c.status).where(
        orders.c.execution_id == row.id, orders.c.side == "buy", orders.c.status.in_(list(MISSING_REASONS))))
    return {int(candle_ms): MISSING_REASONS[status] for candle_ms, status in rows}


def _backtest(compiled: CompiledFlow, data: Candles, first_ms: int) -> list[Side]:
    """The flow's backtest over ``data``, taking no signal before ``first_ms``."""
    import numpy as np

    from capandex.engine import Signals, resolve_settings
    from capandex.engine.rules import REASONS
    from capandex.engine.simulator import simulate

    settings = resolve_settings(compiled.flow, None, None, None)
    signals = compiled.signals(data)
    before = data.time < first_ms
    masked = Signals(buy=signals.buy & ~before, sell=signals.sell & ~before,
                     choice=np.where(before, -1, signals.choice))
    sim = simulate(data, masked, compiled.flow.buys, compiled.flow.risk, settings)
    trades = []
    for i in range(len(sim.entry_bar)):
        reason = REASONS[int(sim.reason[i])]
        still_open = reason == "end_of_data"
        units, entry, exit_ = float(sim.units[i]), float(sim.entry_price[i]), float(sim.exit_price[i])
        fees = units * entry * settings.fee + (0.0 if still_open else units * exit_ * settings.fee)
        trades.append(Side(int(data.time[sim.entry_bar[i]]), entry, units, fees,
                           None if still_open else float(sim.proceeds[i] - sim.spent[i]),
                           None if still_open else int(data.time[sim.exit_bar[i]]),
                           None if still_open else exit_, None if still_open else reason))
    return trades


def _compare(row: Any, bt: Sequence[Side], real: Sequence[Side], tf: int, first: int | None,
             limit: int, unplaced: dict[int, str] | None = None) -> dict[str, Any]:
    by_signal_bt = {t.entry_ms // tf * tf - tf: t for t in bt}
    by_signal_real = {t.entry_ms // tf * tf - tf: t for t in real}
    rows: list[dict[str, Any]] = []
    differences: list[float] = []
    slips: tuple[list[float], list[float]] = ([], [])
    for signal in sorted(set(by_signal_bt) | set(by_signal_real)):
        b, r = by_signal_bt.get(signal), by_signal_real.get(signal)
        status = "matched" if b and r else ("missing" if b else "extra")
        entry_slip = r.entry_price / b.entry_price - 1.0 if b and r and b.entry_price else None
        exit_slip = (1.0 - r.exit_price / b.exit_price) if b and r and b.exit_price and r.exit_price else None
        difference = (r.pnl if r and r.pnl is not None else 0.0) - (b.pnl if b and b.pnl is not None else 0.0)
        closed = (b is None or b.pnl is not None) and (r is None or r.pnl is not None)
        if closed:
            differences.append(difference)
        for bucket, slip in zip(slips, (entry_slip, exit_slip), strict=True):
            if slip is not None:
                bucket.append(slip)
        rows.append({"signalCandle": iso_utc(from_ms(signal)), "status": status,
                     "reason": (unplaced or {}).get(signal) if status == "missing" else None,
                     "backtest": b.to_dict() if b else None, "real": r.to_dict() if r else None,
                     "entrySlippage": entry_slip, "exitSlippage": exit_slip,
                     "pnlDifference": difference if closed else None})
    tracking = math.sqrt(sum(d * d for d in differences) / len(differences)) if differences else 0.0
    summary = {
        "asOf": iso_utc(from_ms(row.last_candle_ms)) if row.last_candle_ms is not None else None,
        "matched": sum(r["status"] == "matched" for r in rows), "missing": sum(r["status"] == "missing" for r in rows),
        "skippedEntries": sum(r["reason"] == "stale_signal" for r in rows),
        "extra": sum(r["status"] == "extra" for r in rows),
        "backtestPnl": sum(t.pnl for t in bt if t.pnl is not None),
        "realPnl": sum(t.pnl for t in real if t.pnl is not None),
        "backtestFees": sum(t.fees for t in bt), "realFees": sum(t.fees for t in real),
        "meanEntrySlippage": sum(slips[0]) / len(slips[0]) if slips[0] else None,
        "meanExitSlippage": sum(slips[1]) / len(slips[1]) if slips[1] else None,
        "trackingError": tracking,
        "trackingErrorPercent": tracking / row.initial_capital * 100.0 if row.initial_capital else 0.0,
    }
    return {"executionId": row.id, "mode": row.mode, "timeframe": row.timeframe,
            "from": iso_utc(from_ms(first)) if first is not None else None, "to": summary["asOf"],
            "summary": summary, "trades": rows[-limit:] if limit else [], "truncated": len(rows) > limit}
