"""Per-user token buckets kept in the database (table ``rate_limits``), one row per (user, bucket).

Why the database: every Lambda container has its own memory, and API Gateway's throttling is
per stage, not per user, so an in-memory bucket would let a user multiply their allowance by
the number of warm containers. One short transaction per request (a row lock on Postgres,
``BEGIN IMMEDIATE`` on SQLite) keeps concurrent requests of one user consistent; users never
contend with each other.

A bucket holds up to ``capacity`` tokens and gains ``refill_per_second`` tokens per second;
each request takes one. A new user starts with a full bucket. The buckets (:data:`BUCKETS`):

- ``chat`` — ``POST /api/chat`` (``CAPANDEX_CHAT_RATE_BURST`` / ``CAPANDEX_CHAT_RATE_PER_MINUTE``);
- ``key_validation`` — ``POST /api/exchange-keys/validate`` and ``POST /api/ai-keys/validate``
  together (``CAPANDEX_KEY_VALIDATION_RATE_BURST`` / ``CAPANDEX_KEY_VALIDATION_RATE_PER_HOUR``):
  a validate endpoint answers "does this key work?", an oracle for testing stolen keys.
- ``report`` — drawing a backtest's report (``GET /api/engine/backtest/{id}/report`` when it is not
  stored yet: up to ~3 s of CPU each) (``CAPANDEX_REPORT_RATE_BURST`` / ``CAPANDEX_REPORT_RATE_PER_HOUR``).

Users can read their own rows but never write them (see :mod:`capandex.db.migrations`): through
Supabase's Data API a user could otherwise refill their own bucket. :func:`consume` therefore
takes the token in its own transaction with the server's role, filtered by ``user_id``.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select, update

from capandex.db.schema import rate_limits, utcnow
from capandex.db.session import upsert_insert
from capandex.errors import RateLimited

if TYPE_CHECKING:
    from capandex.config import Settings


@dataclass(frozen=True)
class Bucket:
    """One kind of request's allowance.

    Attributes:
        name: the ``rate_limits.bucket`` value (at most 32 characters).
        capacity: the burst: tokens a full bucket holds (at least 1).
        refill_per_second: tokens gained per second (> 0).
        what: the requests it limits, for the 429 message (``"chat requests"``).
    """

    name: str
    capacity: int
    refill_per_second: float
    what: str = "requests"

    def take(self, conn: Connection, *, user_id: uuid.UUID) -> float:
        """Take one token of ``user_id``'s bucket inside ``conn``'s transaction; the tokens left.

        Raises:
            RateLimited: the bucket is empty (nothing is taken); ``Retry-After`` is the whole
                seconds until one token is back.
        """
        tokens, now = self._tokens(conn, user_id)
        if tokens < 1.0:
            raise RateLimited(f"Too many {self.what}; wait a moment and try again.",
                              retry_after=math.ceil((1.0 - tokens) / self.refill_per_second))
        self._store(conn, user_id, tokens - 1.0, now)
        return tokens - 1.0

    def reserve(self, conn: Connection, *, user_id: uuid.UUID, max_wait_s: float) -> float:
        """Book one token of ``user_id``'s bucket (inside ``conn``'s transaction): the seconds the
        caller must wait before using it — 0 while tokens are left. The balance may go below zero:
        each booking puts the next one 1 / ``refill_per_second`` later, so concurrent callers queue
        (a scheduler rather than a refusal: what ``reserve`` books, the caller will use).

        Raises:
            RateLimited: the booking would be more than ``max_wait_s`` away (nothing is booked).
        """
        tokens, now = self._tokens(conn, user_id)
        wait = max(0.0, (1.0 - tokens) / self.refill_per_second)
        if wait > max_wait_s:
            raise RateLimited(f"Rate limited: too many {self.what}; the next slot is {wait:.0f} s away.",
                              retry_after=wait)
        self._store(conn, user_id, tokens - 1.0, now)
        return wait

    def wait_s(self, conn: Connection, *, user_id: uuid.UUID) -> float:
        """Seconds until a token booked now could be used (nothing is booked)."""
        return max(0.0, (1.0 - self._tokens(conn, user_id)[0]) / self.refill_per_second)

    def drain(self, conn: Connection, *, user_id: uuid.UUID, seconds: float) -> None:
        """Leave no token for the next ``seconds`` (an upstream answered 429 with Retry-After)."""
        tokens, now = self._tokens(conn, user_id)
        self._store(conn, user_id, min(tokens, 1.0 - seconds * self.refill_per_second), now)

    def _tokens(self, conn: Connection, user_id: uuid.UUID) -> tuple[float, dt.datetime]:
        """The bucket's tokens now (refilled since its last change) and that "now": read once the
        row is locked (until the transaction ends), and never before the row's last change — a
        clock read while waiting for another transaction's lock would store a change back in time,
        and the next caller would be refilled for time that had been spent already."""
        _ensure_row(conn, user_id, self.name, float(self.capacity), utcnow())
        query = select(rate_limits.c.tokens, rate_limits.c.updated_at).where(
            rate_limits.c.user_id == user_id, rate_limits.c.bucket == self.name)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).one()
        now = max(utcnow(), row.updated_at)
        elapsed = (now - row.updated_at).total_seconds()
        return min(float(self.capacity), float(row.tokens) + elapsed * self.refill_per_second), now

    def _store(self, conn: Connection, user_id: uuid.UUID, tokens: float, now: dt.datetime) -> None:
        conn.execute(update(rate_limits).where(rate_limits.c.user_id == user_id, rate_limits.c.bucket == self.name)
                     .values(tokens=tokens, updated_at=now))


#: the bucket of ``POST /api/chat``
CHAT = "chat"
#: the bucket of both key-validation endpoints
KEY_VALIDATION = "key_validation"

#: the bucket of drawing backtest reports
REPORT = "report"

#: bucket name → its configuration from the settings
BUCKETS: dict[str, Callable[[Settings], Bucket]] = {
    CHAT: lambda s: Bucket(CHAT, s.chat_rate_burst, s.chat_rate_per_minute / 60.0, "chat requests"),
    KEY_VALIDATION: lambda s: Bucket(KEY_VALIDATION, s.key_validation_rate_burst,
                                     s.key_validation_rate_per_hour / 3600.0, "key validations"),
    REPORT: lambda s: Bucket(REPORT, s.report_rate_burst, s.report_rate_per_hour / 3600.0, "reports drawn"),
}


def bucket(name: str, settings: Settings | None = None) -> Bucket:
    """The configured bucket ``name`` (a key of :data:`BUCKETS`) for ``settings`` (default: the process's)."""
    if settings is None:
        from capandex.config import get_settings

        settings = get_settings()
    return BUCKETS[name](settings)


def consume(name: str, *, user_id: uuid.UUID, settings: Settings | None = None) -> float:
    """Take one token of the user's bucket ``name`` in its own short transaction (committed even
    when the request fails afterwards, so failing requests count too); the tokens left.

    Raises:
        RateLimited: the bucket is empty (429 with ``Retry-After``).
    """
    from capandex.db.session import transaction

    limit = bucket(name, settings)
    with transaction() as conn:  # the server's role: users may not write their buckets (module doc)
        return limit.take(conn, user_id=user_id)


def _ensure_row(conn: Connection, user_id: uuid.UUID, name: str, tokens: float, now: object) -> None:
    conn.execute(upsert_insert(conn, rate_limits).values(user_id=user_id, bucket=name, tokens=tokens, updated_at=now)
                 .on_conflict_do_nothing(index_elements=["user_id", "bucket"]))
