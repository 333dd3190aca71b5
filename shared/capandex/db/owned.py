"""Fetch one row a user owns: the ownership check every repository needs, written once."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Column, Connection, Table, select

from capandex.errors import NotFound


def owned_row(conn: Connection, table: Table, row_id: str, *, user_id: uuid.UUID, lock: bool = False,
              columns: tuple[Column[Any], ...] = (), noun: str | None = None) -> Any:
    """The row of ``table`` with id ``row_id`` that belongs to ``user_id``.

    Another user's row is indistinguishable from a missing one: both raise :class:`NotFound`
    ("No <noun> with id '…'."; the noun defaults to the table name in the singular). ``lock``
    takes the row lock on Postgres (``SELECT … FOR UPDATE``) to serialise read-modify-write
    sequences on it; SQLite transactions are already serial (``BEGIN IMMEDIATE``). ``columns``
    narrows the select (default: the whole row).
    """
    query = select(*(columns or (table,))).where(table.c.id == row_id, table.c.user_id == user_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        noun = noun or table.name.removesuffix("s").replace("_", " ")
        raise NotFound(f"No {noun} with id '{row_id}'.")
    return row
