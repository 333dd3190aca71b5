"""Per-user row quotas (saved exchange keys, flows): counted and enforced in the caller's transaction;
and retention (notifications, backtests): a user's oldest rows beyond a bound are dropped.

A count followed by an insert is a race: two concurrent saves both see 19 keys and both insert.
On Postgres the count therefore runs under a transaction-scoped advisory lock on (table, user),
so one user's concurrent saves queue for a moment and other users never wait; SQLite transactions
are serial already (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import uuid

from sqlalchemy import Column, ColumnElement, Connection, Table, delete, func, select, text

from capandex.errors import QuotaExceeded


def lock_owner(conn: Connection, table: Table, user_id: uuid.UUID) -> None:
    """Serialise, until ``conn``'s transaction ends, every transaction that counts ``user_id``'s
    rows of ``table`` before adding one (Postgres advisory lock; SQLite transactions are serial)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("select pg_advisory_xact_lock(hashtext(:table), hashtext(:user))"),
                     {"table": table.name, "user": str(user_id)})


def enforce_quota(conn: Connection, table: Table, *, user_id: uuid.UUID, limit: int, what: str,
                  remedy: str) -> None:
    """Raise :class:`QuotaExceeded` (409) when the user already has ``limit`` rows in ``table``.

    Args:
        what: the rows, plural, for the message ("saved exchange keys").
        remedy: what to do about it ("delete one you no longer use").
    """
    lock_owner(conn, table, user_id)
    count = conn.execute(select(func.count()).select_from(table).where(table.c.user_id == user_id)).scalar_one()
    if count >= limit:
        raise QuotaExceeded(f"You have {count} {what}; the limit is {limit}. To add another, {remedy}.")


def keep_newest(conn: Connection, table: Table, *, user_id: uuid.UUID, keep: int, newest: Column,
                where: tuple[ColumnElement[bool], ...] = ()) -> None:
    """Delete ``user_id``'s rows of ``table`` (those matching ``where``) beyond the newest ``keep``
    by ``newest`` (rows tied with the first one dropped go too). One indexed statement, run in the
    transaction that adds a row, so a table a user appends to stays bounded per user by
    construction, whatever the request rate."""
    mine = (table.c.user_id == user_id, *where)
    cutoff = select(newest).where(*mine).order_by(newest.desc()).offset(keep).limit(1).scalar_subquery()
    conn.execute(delete(table).where(*mine, newest <= cutoff))
