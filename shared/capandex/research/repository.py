"""Optimisation rows (``optimizations``) and their evaluated batches (``optimization_batches``).

Plain functions over a caller-owned Connection that always filter by owner too (SQLite has no
row-level security); none of them commits. Statuses: ``running`` → ``completed`` | ``failed`` |
``cancelled``; a late report never overwrites an ended row (every update is guarded by
``status = 'running'``). Callers write in the server's transaction (``transaction()``, no user):
both tables are server-written (:data:`capandex.db.schema.SERVER_WRITTEN_TABLES`), their owner
may only read them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from capandex.db.owned import owned_row
from capandex.db.schema import new_id, optimization_batches, optimizations
from capandex.timeutil import utcnow

RUNNING, COMPLETED, FAILED, CANCELLED = "running", "completed", "failed", "cancelled"


class AlreadyRunning(Exception):
    """The user has a running optimisation (the partial unique index refused a second one)."""


def create(conn: Connection, *, user_id: uuid.UUID, flow_id: str, exchange: str, symbol: str, timeframe: str,
           start_ms: int, end_ms: int, method: str, trials_total: int, deadline_s: float) -> dict[str, Any]:
    """A new ``running`` row, failed if still running ``deadline_s`` from now.

    Raises:
        AlreadyRunning: the user already has a running optimisation.
    """
    now = utcnow()
    row = {"id": new_id("opt"), "user_id": user_id, "flow_id": flow_id, "status": RUNNING, "exchange": exchange,
           "symbol": symbol, "timeframe": timeframe, "start_ms": start_ms, "end_ms": end_ms, "method": method,
           "trials_total": trials_total, "created_at": now, "updated_at": now,
           "deadline_at": now + dt.timedelta(seconds=deadline_s)}
    try:
        with conn.begin_nested():  # a savepoint: the refused insert leaves the transaction usable
            conn.execute(insert(optimizations).values(row))
    except IntegrityError as exc:
        raise AlreadyRunning from exc
    return row


def get(conn: Connection, *, user_id: uuid.UUID, optimization_id: str) -> Any:
    """The row; :class:`NotFound` when it is missing or someone else's."""
    return owned_row(conn, optimizations, optimization_id, user_id=user_id, noun="optimization")


def running(conn: Connection, *, user_id: uuid.UUID) -> Any:
    """The user's running optimisation, or None."""
    return conn.execute(select(optimizations).where(optimizations.c.user_id == user_id,
                                                    optimizations.c.status == RUNNING)).first()


def _end(conn: Connection, user_id: uuid.UUID, optimization_id: str, **values: Any) -> bool:
    now = utcnow()
    result = conn.execute(update(optimizations).where(
        optimizations.c.id == optimization_id, optimizations.c.user_id == user_id, optimizations.c.status == RUNNING)
        .values(updated_at=now, completed_at=now, **values))
    return bool(result.rowcount)


def complete(conn: Connection, *, user_id: uuid.UUID, optimization_id: str, best: Any, result_key: str) -> bool:
    """Mark completed with the winner (``{"params", "metrics"}`` or None) and the result's key."""
    return _end(conn, user_id, optimization_id, status=COMPLETED, best=best, result_key=result_key)


def fail(conn: Connection, *, user_id: uuid.UUID, optimization_id: str, reason: str) -> bool:
    """Mark failed with a reason for the user (a running row only)."""
    return _end(conn, user_id, optimization_id, status=FAILED, error=reason[:1000])


def cancel(conn: Connection, *, user_id: uuid.UUID, optimization_id: str) -> bool:
    """Mark cancelled (a running row only); True when it was running."""
    return _end(conn, user_id, optimization_id, status=CANCELLED)


def set_plan(conn: Connection, *, user_id: uuid.UUID, optimization_id: str, trials_total: int | None = None,
             execution_arn: str | None = None) -> None:
    values: dict[str, Any] = {"updated_at": utcnow()}
    if trials_total is not None:
        values["trials_total"] = trials_total
    if execution_arn is not None:
        values["execution_arn"] = execution_arn
    conn.execute(update(optimizations).where(optimizations.c.id == optimization_id,
                                             optimizations.c.user_id == user_id).values(values))


def record_batch(conn: Connection, *, user_id: uuid.UUID, optimization_id: str, round_number: int, batch: int,
                 trials: int) -> bool:
    """Count a batch as evaluated; False when it already was (a retried worker)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(optimization_batches).values(
                optimization_id=optimization_id, round=round_number, batch=batch, user_id=user_id, trials=trials,
                created_at=utcnow()))
    except IntegrityError:
        return False
    return True


def trials_done(conn: Connection, *, user_id: uuid.UUID, optimization_id: str) -> int:
    """Trials in the batches evaluated so far."""
    total = conn.execute(select(func.coalesce(func.sum(optimization_batches.c.trials), 0)).where(
        optimization_batches.c.optimization_id == optimization_id,
        optimization_batches.c.user_id == user_id)).scalar()
    return int(total or 0)


def is_stale(row: Any, now: dt.datetime | None = None) -> bool:
    """A ``running`` row past its deadline (its worker or execution died)."""
    return row.status == RUNNING and row.deadline_at is not None and row.deadline_at < (now or utcnow())
