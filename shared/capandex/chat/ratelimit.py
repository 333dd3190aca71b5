"""Per-user token buckets kept in the database (table ``rate_limits``).

Why the database: every Lambda container has its own memory, and API Gateway's throttling is
per stage, not per user, so an in-memory bucket would let a user multiply their allowance by
the number of warm containers. One short transaction per request (a row lock on Postgres,
``BEGIN IMMEDIATE`` on SQLite) keeps concurrent requests of one user consistent; users never
contend with each other.

A bucket holds up to ``capacity`` tokens and gains ``refill_per_second`` tokens per second;
each request takes one. A new user starts with a full bucket.
"""

from __future__ import annotations

import math
import uuid

from sqlalchemy import Connection, select, update

from capandex.db.schema import rate_limits, utcnow
from capandex.errors import RateLimited


def take(conn: Connection, *, user_id: uuid.UUID, bucket: str, capacity: int, refill_per_second: float) -> float:
    """Take one token from the user's ``bucket``; the tokens left.

    Raises:
        RateLimited: the bucket is empty; ``Retry-After`` is the time until one token is back.
    """
    now = utcnow()
    _ensure_row(conn, user_id, bucket, float(capacity), now)
    query = select(rate_limits.c.tokens, rate_limits.c.updated_at).where(
        rate_limits.c.user_id == user_id, rate_limits.c.bucket == bucket)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).one()
    elapsed = max(0.0, (now - row.updated_at).total_seconds())
    tokens = min(float(capacity), row.tokens + elapsed * refill_per_second)
    if tokens < 1.0:
        raise RateLimited("Too many chat requests; wait a moment and try again.",
                          retry_after=math.ceil((1.0 - tokens) / refill_per_second))
    conn.execute(update(rate_limits).where(rate_limits.c.user_id == user_id, rate_limits.c.bucket == bucket)
                 .values(tokens=tokens - 1.0, updated_at=now))
    return tokens - 1.0


def _ensure_row(conn: Connection, user_id: uuid.UUID, bucket: str, tokens: float, now: object) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    conn.execute(insert(rate_limits).values(user_id=user_id, bucket=bucket, tokens=tokens, updated_at=now)
                 .on_conflict_do_nothing(index_elements=["user_id", "bucket"]))
