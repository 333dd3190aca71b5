"""The dashboard's multi-flow overview (``GET /api/dashboard/multi-flow``).

Each flow shows its current execution: the running one, else the most recently started one
(stopped or in error), else none (``status`` ``idle``, zeros). PnL is the execution's equity at
its last processed close minus its initial capital; ``tradeCount``/``winRate`` count its closed
positions; ``errorCount`` is the number of failed ticks it has had. The aggregate sums the rows;
``totalPnlPct`` is total PnL over the summed initial capital of the executions shown.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, case, func, select

from capandex.db.schema import executions, flows, positions
from capandex.live.executions import pnl_of, position_counts


def _current_executions(conn: Connection, user_id: uuid.UUID) -> dict[str, Any]:
    rows = conn.execute(select(executions).where(executions.c.user_id == user_id)
                        .order_by(executions.c.started_at))
    current: dict[str, Any] = {}
    for row in rows:  # later rows win, except that a running one is never replaced
        held = current.get(row.flow_id)
        if held is None or held.status != "running":
            current[row.flow_id] = row
    return current


def _wins(conn: Connection, execution_ids: list[str]) -> dict[str, int]:
    if not execution_ids:
        return {}
    rows = conn.execute(select(positions.c.execution_id,
                               func.sum(case((positions.c.pnl > 0, 1), else_=0)))
                        .where(positions.c.execution_id.in_(execution_ids), positions.c.status == "closed")
                        .group_by(positions.c.execution_id))
    return {e: int(n or 0) for e, n in rows}


def multi_flow(conn: Connection, *, user_id: uuid.UUID) -> dict[str, Any]:
    """``{"flows": [...], "aggregate": {...}}`` as the API reference shows."""
    current = _current_executions(conn, user_id)
    ids = [row.id for row in current.values()]
    counts, wins = position_counts(conn, ids), _wins(conn, ids)
    rows, capital = [], 0.0
    for flow in conn.execute(select(flows).where(flows.c.user_id == user_id).order_by(flows.c.name)):
        settings = flow.document.get("settings", {})
        execution = current.get(flow.id)
        row = {"id": flow.id, "name": flow.name, "status": "idle", "symbol": settings.get("symbol"),
               "exchange": settings.get("exchange"), "pnl": 0.0, "pnlPct": 0.0, "tradeCount": 0,
               "winRate": 0.0, "errorCount": 0, "openPositions": 0, "executionId": None}
        if execution is not None:
            pnl, pnl_pct = pnl_of(execution)
            closed = counts[execution.id]["closed"]
            capital += execution.initial_capital
            row.update(status=execution.status, symbol=execution.symbol, exchange=execution.exchange,
                       pnl=pnl, pnlPct=pnl_pct, tradeCount=closed,
                       winRate=wins.get(execution.id, 0) / closed if closed else 0.0,
                       errorCount=execution.error_count, openPositions=counts[execution.id]["open"],
                       executionId=execution.id)
        rows.append(row)
    total_pnl = sum(r["pnl"] for r in rows)
    aggregate = {"totalPnl": total_pnl, "totalPnlPct": total_pnl / capital * 100.0 if capital else 0.0,
                 "totalTrades": sum(r["tradeCount"] for r in rows),
                 "runningFlows": sum(r["status"] == "running" for r in rows),
                 "errorFlows": sum(r["status"] == "error" for r in rows),
                 "totalOpenPositions": sum(r["openPositions"] for r in rows)}
    return {"flows": rows, "aggregate": aggregate}
