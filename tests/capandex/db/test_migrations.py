"""supabase/migrations/, applied in order as ``supabase db push`` applies it, builds exactly the
schema the code defines; no committed migration file is ever edited (see capandex.db.migrations).

The comparison is the test that fails when schema.py changes without a delta covering it: one
database from every migration file in order, one from the full render (``capandex db sql``), and
their catalogs must agree on every table's columns (type, nullability, default; not their order,
which ``add column`` cannot choose), indexes (partial ones included), constraints and foreign keys,
RLS flags, policies, grants and the exchange seed.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from capandex.cli import main
from capandex.db.migrations import render_postgres
from tests.utils.postgres import MIGRATIONS, create_test_database, drop_database

#: Every committed migration file and its SHA-256. A project that applied a file never reads it
#: again, so a pinned file must never change; pin a new delta once it is complete.
PINNED = {
    "20261124000000_capandex_init.sql": "ec4828748a6f00060a2395f4ed7a4df9ccb1e5ec6027cef5b608b42f46c3fad5",
    "20261129000000_optimizations_stop_orders_position_notes.sql":
        "db2f19911ba36807366f16a4b2b24dbb29f2ace8b63c04b1ca80cd660c895921",
}

#: What the catalog of the ``capandex`` schema (and the seed) says, one query per aspect.
CATALOG = {
    "relations": """
        select c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'capandex'""",
    "columns": """
        select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where n.nspname = 'capandex' and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped""",
    "indexes": "select tablename, indexname, indexdef from pg_indexes where schemaname = 'capandex'",
    "constraints": """
        select c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
        from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'capandex'""",
    "row level security": """
        select c.relname, c.relrowsecurity, c.relforcerowsecurity
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'capandex' and c.relkind = 'r'""",
    "policies": """
        select tablename, policyname, permissive, array_to_string(roles, ','), cmd, qual, with_check
        from pg_policies where schemaname = 'capandex'""",
    "table grants": """
        select c.relname, coalesce(r.rolname, 'PUBLIC'), g.privilege_type, g.is_grantable
        from pg_class c join pg_namespace n on n.oid = c.relnamespace cross join aclexplode(c.relacl) g
        left join pg_roles r on r.oid = g.grantee where n.nspname = 'capandex'""",
    "schema grants": """
        select coalesce(r.rolname, 'PUBLIC'), g.privilege_type
        from pg_namespace n cross join aclexplode(n.nspacl) g left join pg_roles r on r.oid = g.grantee
        where n.nspname = 'capandex'""",
    "exchange seed": "select to_jsonb(e)::text from capandex.exchanges e",
}


def catalog(url: str) -> dict[str, set[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        return {aspect: set(conn.execute(query).fetchall()) for aspect, query in CATALOG.items()}


def test_committed_migration_files_are_never_edited() -> None:
    found = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in MIGRATIONS}
    edited = [name for name, digest in PINNED.items() if found.get(name) != digest]
    assert not edited, (f"{edited} changed or disappeared: a deployed project never re-runs a migration it has "
                        "applied; restore the file and put the change in a new, later file")
    unpinned = {name: digest for name, digest in found.items() if name not in PINNED}
    assert not unpinned, f"pin the new migration in PINNED once it is complete: {unpinned}"


def test_migration_files_are_named_by_version() -> None:
    """Supabase's ``<14-digit version>_<name>.sql``: name order is version order, versions unique."""
    names = [path.name for path in MIGRATIONS]
    assert all(re.fullmatch(r"\d{14}_[a-z0-9_]+\.sql", name) for name in names), names
    versions = [name[:14] for name in names]
    assert len(set(versions)) == len(versions)


def test_capandex_db_sql_prints_the_full_render(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "sql"]) == 0
    assert capsys.readouterr().out == render_postgres()
    assert main(["db", "sql", "--table", "optimizations"]) == 0
    block = capsys.readouterr().out
    assert block.startswith("CREATE TABLE capandex.optimizations (") and "CREATE TABLE capandex.flows" not in block
    assert "create policy optimizations_owner on capandex.optimizations for select" in block


@pytest.fixture(scope="module")
def migrated_and_rendered(postgres_url: str) -> Iterator[tuple[str, str]]:
    """Two fresh databases: every migration file in order, and the full render alone."""
    migrated = create_test_database(postgres_url)
    rendered = create_test_database(postgres_url, [render_postgres()])
    try:
        yield migrated, rendered
    finally:
        drop_database(postgres_url, migrated)
        drop_database(postgres_url, rendered)


def test_the_migrations_build_exactly_the_schema_the_code_defines(migrated_and_rendered: tuple[str, str]) -> None:
    migrated, rendered = (catalog(url) for url in migrated_and_rendered)
    assert rendered["columns"] and len(rendered["exchange seed"]) == 6  # the queries see the schema
    differences = {aspect: {"missing from the migrations": sorted(rendered[aspect] - migrated[aspect], key=repr),
                            "not in schema.py": sorted(migrated[aspect] - rendered[aspect], key=repr)}
                   for aspect in CATALOG if migrated[aspect] != rendered[aspect]}
    assert not differences, ("supabase/migrations/ does not build the schema of capandex/db/schema.py; add a delta "
                             f"(see capandex.db.migrations):\n{differences}")


def test_the_delta_upgrades_a_released_database_with_rows(postgres_url: str) -> None:
    """Orders recorded before stop orders existed become market orders; the rows survive."""
    init, *deltas = [path.read_text() for path in MIGRATIONS]
    url = create_test_database(postgres_url, [init])
    user = uuid.uuid4()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("set search_path = capandex")
            conn.execute("insert into flows values ('flow_1', %s, 'f', '{}', null, now(), now())", (user,))
            conn.execute("insert into executions (id, user_id, flow_id, mode, status, exchange, symbol, timeframe, "
                         "initial_capital, state, current_tick, error_count, consecutive_failures, started_at) "
                         "values ('exe_1', %s, 'flow_1', 'live', 'running', 'binance', 'BTC/USDT', '1h', 100, "
                         "'{}', 0, 0, 0, now())", (user,))
            conn.execute("insert into orders (id, user_id, execution_id, client_order_id, symbol, side, status, "
                         "candle_ms, created_at) values ('ord_1', %s, 'exe_1', 'c1', 'BTC/USDT', 'buy', 'filled', "
                         "0, now())", (user,))
            for delta in deltas:
                conn.execute(delta)
            assert conn.execute("select kind, trigger_price from orders").fetchall() == [("market", None)]
            conn.execute("insert into orders (id, user_id, execution_id, client_order_id, symbol, side, status, "
                         "candle_ms, created_at) values ('ord_2', %s, 'exe_1', 'c2', 'BTC/USDT', 'sell', 'new', "
                         "0, now())", (user,))  # as the previous release writes it during a deploy
            assert conn.execute("select kind from orders where id = 'ord_2'").fetchone() == ("market",)
    finally:
        drop_database(postgres_url, url)
