"""The one schema: row-level security, the seed, and what users may write (the migration files
themselves: test_migrations.py)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import select

from capandex.db.migrations import render_postgres
from capandex.db.schema import SEED_EXCHANGES, SERVER_WRITTEN_TABLES, USER_TABLES, exchanges
from capandex.db.session import get_engine, transaction


def test_every_user_table_has_rls_and_an_owner_policy() -> None:
    sql = render_postgres()
    for table in USER_TABLES:
        assert f"alter table capandex.{table} enable row level security;" in sql
        assert f"create policy {table}_owner on capandex.{table}" in sql
    assert "public." not in sql  # nothing in the schema Supabase's Data API exposes
    assert {"flows", "flow_versions", "executions", "positions", "orders", "exchange_keys", "ai_keys",
            "notifications", "chat_messages", "profiles", "backtests"} <= set(USER_TABLES)


def test_exchanges_are_seeded(database_url: str) -> None:
    with transaction(engine=get_engine(database_url)) as conn:
        rows = conn.execute(select(exchanges).order_by(exchanges.c.sort_order)).all()
    assert [r.id for r in rows] == ["binance", "okx", "bybit", "mexc", "coinbase", "kraken"]
    assert [r.ccxt_id for r in rows] == [e["ccxt_id"] for e in SEED_EXCHANGES]
    assert all(r.is_active for r in rows)
    assert [r.id for r in rows if r.requires_passphrase] == ["okx"]


def _as(conn: psycopg.Connection, user: uuid.UUID | None, role: str = "authenticated") -> None:
    conn.execute("select set_config('request.jwt.claims', %s, true)",
                 (f'{{"sub": "{user}"}}' if user else "",))
    conn.execute(f"set local role {role}")
    conn.execute("set local search_path = capandex")


def test_rls_hides_other_users_rows(postgres_url: str) -> None:
    """Through Supabase's `authenticated` role, user B sees and changes none of user A's rows."""
    alice, bob = uuid.uuid4(), uuid.uuid4()
    flow_id = f"flow_{uuid.uuid4().hex}"
    with psycopg.connect(postgres_url) as conn:
        _as(conn, alice)
        conn.execute("insert into flows (id, user_id, name, document, created_at, updated_at) "
                     "values (%s, %s, 'mine', '{}', now(), now())", (flow_id, alice))
        conn.commit()
        _as(conn, bob)
        assert conn.execute("select count(*) from flows where id = %s", (flow_id,)).fetchone()[0] == 0
        assert conn.execute("update flows set name = 'stolen' where id = %s", (flow_id,)).rowcount == 0
        assert conn.execute("delete from flows where id = %s", (flow_id,)).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # cannot write rows owned by someone else
            conn.execute("insert into flows (id, user_id, name, document, created_at, updated_at) "
                         "values (%s, %s, 'forged', '{}', now(), now())", (f"flow_{uuid.uuid4().hex}", alice))
        conn.rollback()
        _as(conn, bob)
        assert conn.execute("select count(*) from exchanges").fetchone()[0] == 6  # shared, read-only
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("update exchanges set is_active = false")
        conn.rollback()
        _as(conn, None, role="anon")  # the Data API's anonymous role cannot even see the schema
        for table in ("flows", "exchanges"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select count(*) from capandex.{table}")
            conn.rollback()
            _as(conn, None, role="anon")
        conn.rollback()
        _as(conn, alice)
        assert conn.execute("select name from flows where id = %s", (flow_id,)).fetchone()[0] == "mine"


def test_user_transactions_run_under_rls(postgres_url: str) -> None:
    """The backend's own per-request transaction is subject to RLS, not just the owner filters."""
    from sqlalchemy import text

    alice, bob = uuid.uuid4(), uuid.uuid4()
    engine = get_engine(postgres_url)
    with transaction(alice, engine=engine) as conn:
        conn.execute(text("insert into capandex.flows (id, user_id, name, document, created_at, updated_at) "
                          "values (:id, :u, 'a', '{}', now(), now())"), {"id": f"flow_{uuid.uuid4().hex}", "u": alice})
    with transaction(bob, engine=engine) as conn:
        # No owner filter in this query: RLS alone must hide alice's row.
        count = conn.execute(text("select count(*) from capandex.flows where user_id = :u"), {"u": alice}).scalar()
        assert count == 0
        assert conn.execute(text("select current_user")).scalar() == "authenticated"


def test_users_only_read_server_written_tables(postgres_url: str) -> None:
    """An optimisation's status and result, or a rate-limit bucket, cannot be written as the owner
    (one running optimisation per user is the cost bound; result_key names what GET reads)."""
    assert {"rate_limits", "optimizations", "optimization_batches"} <= set(SERVER_WRITTEN_TABLES)
    alice = uuid.uuid4()
    with psycopg.connect(postgres_url) as conn:
        for table in SERVER_WRITTEN_TABLES:
            _as(conn, alice)
            assert conn.execute(f"select count(*) from {table} where user_id = %s", (alice,)).fetchone() == (0,)
            for statement in (f"update {table} set user_id = user_id", f"delete from {table}",
                              f"insert into {table} (user_id) values ('{alice}')"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
                conn.rollback()
                _as(conn, alice)
            conn.rollback()
