"""A flow's performance from its closed positions (``GET /api/flows/{flowId}/performance``).

The closed positions of every execution of the flow (paper and live), optionally only those whose
exit lies in ``[from, to]``, form a realized equity curve: the initial capital (the flow's
``settings.initialCapital``, default 10,000) at the first entry, then capital plus the cumulative
pnl after each exit, timestamped with the exit time in epoch ms. The metrics are the backtester's
own function (:func:`capandex.engine.compute_metrics`) over that curve and the trades' pnl, so
every definition (drawdown from the running peak, daily Sharpe × sqrt(365), profit factor null
without a losing trade) is the backtest's. Open positions do not count until they close.

The curve sent has at most :data:`~capandex.engine.API_EQUITY_POINTS` points, as a backtest's: each
slice's low and high, the ends and both deepest drawdowns (percent and money), and evenly spaced ones
between (:func:`capandex.engine.result.downsample_indices`). A flow that trades every other minute closes
~260,000 positions a year: one point each was a 13 MB answer, past what Lambda may return.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Connection, select

from capandex.db.owned import owned_row
from capandex.db.schema import flows, positions
from capandex.errors import ValidationFailed, field_problem
from capandex.timeutil import epoch_ms


def parse_bound(value: str | None, field: str) -> dt.datetime | None:
    """ISO 8601 (a date, or a date-time with or without zone; naive means UTC) → aware UTC."""
    if value is None or value == "":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: a zone moves it past year 1 or 9999
        raise ValidationFailed(f"Invalid input: {field}.", details=[field_problem(
            field, "must be an ISO 8601 date or date-time, e.g. 2025-01-15T10:30:00Z")]) from None


def flow_performance(conn: Connection, *, user_id: uuid.UUID, flow_id: str, start: dt.datetime | None = None,
                     end: dt.datetime | None = None) -> dict[str, Any]:
    import numpy as np

    from capandex.engine import API_EQUITY_POINTS, compute_metrics
    from capandex.engine.result import downsample_indices

    flow = owned_row(conn, flows, flow_id, user_id=user_id, columns=(flows.c.document,))
    if start is not None and end is not None and start > end:
        raise ValidationFailed("Invalid input: from.", details=[field_problem("from", "must not be after 'to'")])
    capital = float((flow.document.get("settings") or {}).get("initialCapital") or 10_000.0)
    where = [positions.c.flow_id == flow_id, positions.c.user_id == user_id, positions.c.status == "closed"]
    if start is not None:
        where.append(positions.c.exit_time >= start)
    if end is not None:
        where.append(positions.c.exit_time <= end)
    rows = conn.execute(select(positions.c.entry_time, positions.c.exit_time, positions.c.pnl)
                        .where(*where).order_by(positions.c.exit_time, positions.c.id)).all()
    pnl = np.array([float(r.pnl or 0.0) for r in rows])
    moments = [rows[0].entry_time] + [r.exit_time for r in rows] if rows else []
    times = np.array([epoch_ms(moment) for moment in moments], dtype=np.int64)
    equity = capital + np.r_[0.0, np.cumsum(pnl)] if rows else np.array([])
    if not rows:  # no closed trade: the metrics of a flat curve (compute_metrics needs >= 1 point)
        equity, times = np.array([capital]), np.array([0], dtype=np.int64)
    metrics = compute_metrics(equity, times, pnl, capital)
    if not rows:
        equity, times = equity[:0], times[:0]
    keys = ("totalTrades", "winRate", "pnl", "pnlPercent", "maxDrawdown", "maxDrawdownPercent", "sharpeRatio",
            "profitFactor")
    out = {key: metrics[key] for key in keys}
    shown = downsample_indices(equity, API_EQUITY_POINTS)
    out["equityCurve"] = [{"timestamp": int(t), "equity": float(e)} for t, e in zip(times[shown], equity[shown],
                                                                                    strict=True)]
    return out
