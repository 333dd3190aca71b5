"""Connections and transactions.

Production talks to Supabase Postgres through its transaction pooler (Supavisor, port 6543):
a pooled server connection is handed to another client after each transaction, so prepared
statements are off (``prepare_threshold=None``) and no client-side pool is kept (``NullPool``):
a Lambda container that is frozen between invocations must not hold connections open.

Every request runs in one transaction (:func:`transaction`). For a signed-in user that
transaction also switches to Supabase's ``authenticated`` role with the user's claims, so
row-level security applies to the backend's own queries too: a bug that forgets an owner
filter still cannot read another user's rows. SQLite (the embedded default) has no roles; there
the owner filters of each subsystem's repository (:func:`capandex.db.owned.owned_row` and the
queries beside it) are the guard, and the same repository tests run on both databases.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, Table, create_engine, event, insert, select, text
from sqlalchemy.pool import NullPool

from capandex.db.migrations import seed_rows
from capandex.db.schema import POSTGRES_SCHEMA, exchanges
from capandex.db.sqlite_upgrade import upgrade_sqlite

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: the settings' database), created once per container."""
    if url is None:
        from capandex.config import get_settings

        url = get_settings().sqlalchemy_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create(url)
    return engine


def dispose_engines() -> None:
    """Close every engine's connections and forget the engines (SnapStart's before-snapshot hook)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _create_sqlite(url)
    from capandex.config import get_settings

    connect_args = {"prepare_threshold": None, "connect_timeout": 10}
    pool_size = get_settings().db_pool_size
    if pool_size:  # a long-running server (capandex serve) on its own Postgres: keep connections
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                               connect_args=connect_args)
    else:  # Lambda behind the transaction pooler: a frozen container must hold no connection
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    return engine.execution_options(schema_translate_map={None: POSTGRES_SCHEMA})


def _create_sqlite(url: str) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        _private_database(Path(path))
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # pysqlite's own transaction handling defers BEGIN; take control so that every
        # transaction starts with BEGIN IMMEDIATE and concurrent writers serialise cleanly
        # (read-modify-write such as "next version number" stays correct).
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA foreign_keys = ON")
        dbapi_conn.execute("PRAGMA journal_mode = WAL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    upgrade_sqlite(engine, path or ":memory:")  # a file from an earlier release gains what it lacks
    with engine.begin() as conn:
        if conn.execute(select(exchanges.c.id).limit(1)).first() is None:
            conn.execute(insert(exchanges), seed_rows())
    return engine


def _private_database(path: Path) -> None:
    """The SQLite file 0600 (so its WAL is too) in a 0700 directory; the data directory itself
    is tightened even if it existed (:mod:`capandex.private_files`)."""
    from capandex.config import get_settings
    from capandex.private_files import private_dir, private_file

    data_dir = get_settings().data_dir.resolve()
    private_dir(path.parent, tighten=path.parent.resolve() == data_dir)
    private_file(path)


@contextmanager
def transaction(user_id: uuid.UUID | None = None, *, engine: Engine | None = None) -> Iterator[Connection]:
    """One transaction, committed on success and rolled back on any exception.

    With ``user_id`` on Postgres the transaction runs as Supabase's ``authenticated`` role with
    ``request.jwt.claims`` set, so ``auth.uid()`` and row-level security apply; without it (the
    tick scheduler, migrations) it runs with the connection's own role.
    """
    engine = engine or get_engine()
    with engine.begin() as conn:
        if user_id is not None and conn.dialect.name == "postgresql":
            claims = json.dumps({"sub": str(user_id), "role": "authenticated"})
            conn.execute(text("select set_config('request.jwt.claims', :c, true)"), {"c": claims})
            conn.execute(text("set local role authenticated"))
        yield conn


def upsert_insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` into ``table`` in the connection's dialect, so ``on_conflict_do_nothing`` /
    ``on_conflict_do_update`` (the same call on Postgres and SQLite) can follow."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgres_insert

        return postgres_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
