"""The shared per-user token buckets (capandex.ratelimit): named buckets with their own settings,
on SQLite and Postgres, and users cannot refill their own bucket through the Data API."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from sqlalchemy import update

import capandex.ratelimit
from capandex.config import get_settings
from capandex.db.schema import rate_limits, utcnow
from capandex.db.session import get_engine, transaction
from capandex.errors import RateLimited
from capandex.ratelimit import BUCKETS, Bucket, bucket, consume


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    """The buckets' clock stands still (a loaded machine must not refill a bucket between two takes);
    tests move time by ageing the stored row (``_age``)."""
    now = utcnow()
    monkeypatch.setattr(capandex.ratelimit, "utcnow", lambda: now)


@pytest.fixture
def engine(configure, database_url):
    configure(DATABASE_URL=database_url, CAPANDEX_CHAT_RATE_BURST="3", CAPANDEX_CHAT_RATE_PER_MINUTE="6",
              CAPANDEX_KEY_VALIDATION_RATE_BURST="2", CAPANDEX_KEY_VALIDATION_RATE_PER_HOUR="36")
    return get_engine()


def _take(user, capacity: int = 2):
    with transaction() as conn:
        return Bucket("chat", capacity, 0.1).take(conn, user_id=user)


def _age(user, seconds: float) -> None:
    with transaction() as conn:
        conn.execute(update(rate_limits).where(rate_limits.c.user_id == user)
                     .values(updated_at=capandex.ratelimit.utcnow() - dt.timedelta(seconds=seconds)))


def test_bucket_empties_refills_and_is_per_user(engine) -> None:
    user = uuid.uuid4()
    assert _take(user) == pytest.approx(1.0, abs=0.01)
    assert _take(user) == pytest.approx(0.0, abs=0.01)
    with pytest.raises(RateLimited) as caught:
        _take(user)
    assert caught.value.status == 429
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 10
    assert _take(uuid.uuid4()) == pytest.approx(1.0, abs=0.01)  # another user is unaffected
    _age(user, 20)  # 20 s later: two tokens back (capped at capacity)
    assert _take(user) == pytest.approx(1.0, abs=0.01)


def test_a_refused_request_takes_nothing(engine) -> None:
    user = uuid.uuid4()
    _take(user, capacity=1)
    for _ in range(3):
        with pytest.raises(RateLimited):
            _take(user, capacity=1)
    _age(user, 10)
    assert _take(user, capacity=1) == pytest.approx(0.0, abs=0.01)


def test_buckets_come_from_the_settings(engine) -> None:
    assert set(BUCKETS) == {"chat", "key_validation", "report"}
    chat, keys = bucket("chat"), bucket("key_validation", get_settings())
    assert (chat.name, chat.capacity, chat.refill_per_second) == ("chat", 3, pytest.approx(0.1))
    assert (keys.name, keys.capacity, keys.refill_per_second) == ("key_validation", 2, pytest.approx(0.01))
    assert all(len(name) <= 32 for name in BUCKETS)  # rate_limits.bucket is String(32)


def test_named_buckets_are_independent_per_user_and_name(engine) -> None:
    user = uuid.uuid4()
    assert consume("key_validation", user_id=user) == pytest.approx(1.0, abs=0.01)
    assert consume("key_validation", user_id=user) == pytest.approx(0.0, abs=0.01)
    with pytest.raises(RateLimited) as caught:
        consume("key_validation", user_id=user)
    assert caught.value.status == 429 and "key validations" in caught.value.message
    assert 90 <= int(caught.value.headers["Retry-After"]) <= 100  # one token per 100 s
    assert consume("chat", user_id=user) == pytest.approx(2.0, abs=0.01)  # another bucket: full
    assert consume("key_validation", user_id=uuid.uuid4()) == pytest.approx(1.0, abs=0.01)  # another user


def test_users_cannot_write_their_own_bucket(postgres_url: str, configure) -> None:
    """Through Supabase's ``authenticated`` role a user reads their bucket but cannot refill it."""
    configure(DATABASE_URL=postgres_url)
    user = uuid.uuid4()
    consume("key_validation", user_id=user)
    with psycopg.connect(postgres_url) as conn:
        conn.execute("select set_config('request.jwt.claims', %s, true)", (f'{{"sub": "{user}"}}',))
        conn.execute("set local role authenticated")
        conn.execute("set local search_path = capandex")
        assert conn.execute("select bucket from rate_limits").fetchall() == [("key_validation",)]
        for statement in ("update rate_limits set tokens = 1000",
                          "delete from rate_limits",
                          f"insert into rate_limits values ('{user}', 'chat', 1000, now())"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)


def test_reserve_books_future_slots_and_drain_pushes_them_back(engine, monkeypatch) -> None:
    """``reserve`` queues callers one slot apart instead of refusing them; ``drain`` (an upstream's
    Retry-After) leaves nothing for that long; a slot beyond ``max_wait_s`` is refused, unbooked."""
    from capandex import ratelimit

    clock = [utcnow()]
    monkeypatch.setattr(ratelimit, "utcnow", lambda: clock[0])  # every booking at one instant
    user, budget = uuid.uuid4(), Bucket("key:test", 2, 10.0, "requests with this key")

    def reserve(max_wait_s: float = 5.0) -> float:
        with transaction() as conn:
            return budget.reserve(conn, user_id=user, max_wait_s=max_wait_s)

    waits = [reserve() for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]  # the burst
    assert waits[2:] == pytest.approx([0.1, 0.2, 0.3])  # then one every 1/10 s
    with transaction() as conn:
        budget.drain(conn, user_id=user, seconds=30.0)
        assert budget.wait_s(conn, user_id=user) == pytest.approx(30.0)
    with pytest.raises(RateLimited) as refused:
        reserve(max_wait_s=20.0)
    assert refused.value.headers["Retry-After"] == "30"
    clock[0] += dt.timedelta(seconds=31)
    assert reserve() == 0.0  # the Retry-After is over
