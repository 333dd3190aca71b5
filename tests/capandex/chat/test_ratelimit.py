"""The per-user token bucket, on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import update

from capandex.chat.ratelimit import take
from capandex.db.schema import rate_limits, utcnow
from capandex.db.session import get_engine, transaction
from capandex.errors import RateLimited


@pytest.fixture
def engine(configure, database_url):
    configure(DATABASE_URL=database_url)
    return get_engine()


def _take(user, **kw):
    with transaction(user) as conn:
        return take(conn, user_id=user, bucket="chat", **{"capacity": 2, "refill_per_second": 0.1, **kw})


def test_bucket_empties_refills_and_is_per_user(engine):
    user = uuid.uuid4()
    assert _take(user) == pytest.approx(1.0, abs=0.01)
    assert _take(user) == pytest.approx(0.0, abs=0.01)
    with pytest.raises(RateLimited) as caught:
        _take(user)
    assert caught.value.status == 429
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 10
    assert _take(uuid.uuid4()) == pytest.approx(1.0, abs=0.01)  # another user is unaffected
    with transaction(user) as conn:  # 20 s later: two tokens back (capped at capacity)
        conn.execute(update(rate_limits).where(rate_limits.c.user_id == user)
                     .values(updated_at=utcnow() - dt.timedelta(seconds=20)))
    assert _take(user) == pytest.approx(1.0, abs=0.01)


def test_a_refused_request_takes_nothing(engine):
    user = uuid.uuid4()
    _take(user, capacity=1)
    for _ in range(3):
        with pytest.raises(RateLimited):
            _take(user, capacity=1)
    with transaction(user) as conn:
        conn.execute(update(rate_limits).where(rate_limits.c.user_id == user)
                     .values(updated_at=utcnow() - dt.timedelta(seconds=10)))
    assert _take(user, capacity=1) == pytest.approx(0.0, abs=0.01)
