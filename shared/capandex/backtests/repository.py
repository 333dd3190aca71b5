"""Backtest rows (the ``backtests`` table). Plain functions over a caller-owned Connection that
always filter by owner too (SQLite has no row-level security); none of them commits."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Connection, insert, select, update

from capandex.db.owned import owned_row
from capandex.db.quota import keep_newest
from capandex.db.schema import backtests, new_id, utcnow

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
#: ended backtests kept per user: a new one drops the oldest beyond it (their files in the store go
#: with the bucket's 90-day lifecycle). Sequential 2-day backtests ran at ~39 a second; unbounded,
#: one user grew the table by millions of rows a day.
MAX_KEPT = 1000


def create(conn: Connection, *, user_id: uuid.UUID, flow_id: str, exchange: str, symbol: str, timeframe: str,
           start_ms: int, end_ms: int, deadline_s: float) -> dict[str, Any]:
    """A new ``running`` row that counts as failed if still running ``deadline_s`` from now; the
    user's ended backtests beyond the newest :data:`MAX_KEPT` are dropped."""
    now = utcnow()
    row = {"id": new_id("bt"), "user_id": user_id, "flow_id": flow_id, "status": RUNNING, "exchange": exchange,
           "symbol": symbol, "timeframe": timeframe, "start_ms": start_ms, "end_ms": end_ms, "progress": 0.0,
           "created_at": now, "updated_at": now, "deadline_at": now + dt.timedelta(seconds=deadline_s)}
    conn.execute(insert(backtests).values(row))
    keep_newest(conn, backtests, user_id=user_id, keep=MAX_KEPT, newest=backtests.c.created_at,
                where=(backtests.c.status != RUNNING,))
    return row


def get(conn: Connection, *, user_id: uuid.UUID, backtest_id: str) -> Any:
    """The row; :class:`NotFound` when it is missing or someone else's."""
    return owned_row(conn, backtests, backtest_id, user_id=user_id)


def set_progress(conn: Connection, *, user_id: uuid.UUID, backtest_id: str, progress: float,
                 increment: bool = False) -> None:
    """Set (or, with ``increment``, add to) the progress percentage of a running backtest (≤ 99)."""
    column = backtests.c.progress
    value = column + progress if increment else progress
    conn.execute(update(backtests).where(backtests.c.id == backtest_id, backtests.c.user_id == user_id,
                                         backtests.c.status == RUNNING)
                 .values(progress=value, updated_at=utcnow()))
    conn.execute(update(backtests).where(backtests.c.id == backtest_id, backtests.c.user_id == user_id,
                                         column > 99.0).values(progress=99.0))


def complete(conn: Connection, *, user_id: uuid.UUID, backtest_id: str, metrics: dict[str, Any],
             result_key: str) -> None:
    now = utcnow()
    conn.execute(update(backtests).where(backtests.c.id == backtest_id, backtests.c.user_id == user_id)
                 .values(status=COMPLETED, progress=100.0, metrics=metrics, result_key=result_key, error=None,
                         updated_at=now, completed_at=now))


def fail(conn: Connection, *, user_id: uuid.UUID, backtest_id: str, reason: str) -> None:
    """Mark a backtest failed with a reason for the user (a running one only: a late failure
    report never overwrites a completed result)."""
    now = utcnow()
    conn.execute(update(backtests).where(backtests.c.id == backtest_id, backtests.c.user_id == user_id,
                                         backtests.c.status == RUNNING)
                 .values(status=FAILED, error=reason[:1000], updated_at=now, completed_at=now))


def is_stale(row: Any, default_deadline_s: int, now: dt.datetime | None = None) -> bool:
    """A ``running`` row past its deadline (its request, worker or execution died); rows without
    one get ``default_deadline_s`` after their creation."""
    now = now or utcnow()
    deadline = row.deadline_at or row.created_at + dt.timedelta(seconds=default_deadline_s)
    return row.status == RUNNING and deadline < now


def running(conn: Connection, *, user_id: uuid.UUID, now: dt.datetime, longer_than_s: float) -> tuple[int, int]:
    """The user's backtests still running (and not past their deadline): ``(background, in
    request)`` — the background ones were given more than ``longer_than_s`` seconds (an in-request
    run gets a short deadline)."""
    rows = conn.execute(select(backtests.c.created_at, backtests.c.deadline_at).where(
        backtests.c.user_id == user_id, backtests.c.status == RUNNING, backtests.c.deadline_at > now)).all()
    background = sum(1 for r in rows if (r.deadline_at - r.created_at).total_seconds() > longer_than_s)
    return background, len(rows) - background
