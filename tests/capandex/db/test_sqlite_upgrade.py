"""A local SQLite database made by the first release keeps working after an upgrade: opening it
adds what the schema gained (capandex.db.sqlite_upgrade), or refuses clearly and changes nothing."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, inspect, select

from capandex.db.schema import orders, positions
from capandex.db.session import get_engine, transaction
from capandex.db.sqlite_upgrade import upgrade_sqlite
from capandex.errors import Misconfigured

RELEASE_SCHEMA = Path(__file__).resolve().parents[2] / "data" / "sqlite_schema_265d673.sql"
USER = uuid.uuid4()


def released_database(path: Path, extra_sql: str = "") -> Path:
    """A file as the first release left it: its schema and an execution with one market order."""
    with sqlite3.connect(path) as db:
        db.executescript(RELEASE_SCHEMA.read_text() + extra_sql)
        db.execute("insert into flows values ('flow_1', ?, 'f', '{}', null, '2026-11-20', '2026-11-20')", (USER.hex,))
        db.execute("insert into executions (id, user_id, flow_id, mode, status, exchange, symbol, timeframe, "
                   "initial_capital, state, current_tick, error_count, consecutive_failures, started_at) values "
                   "('exe_1', ?, 'flow_1', 'paper', 'running', 'binance', 'BTC/USDT', '1h', 100, '{}', 0, 0, 0, "
                   "'2026-11-20')", (USER.hex,))
        db.execute("insert into orders (id, user_id, execution_id, client_order_id, symbol, side, status, candle_ms, "
                   "created_at) values ('ord_1', ?, 'exe_1', 'c1', 'BTC/USDT', 'buy', 'filled', 0, '2026-11-20')",
                   (USER.hex,))
    return path


def shape(engine: Engine) -> dict[str, Any]:
    """Every table's columns (not their order), indexes, unique constraints and foreign keys."""
    inspector = inspect(engine)
    return {table: ({(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in inspector.get_columns(table)},
                    sorted((i["name"], i["unique"], tuple(i["column_names"])) for i in inspector.get_indexes(table)),
                    sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
                    sorted((tuple(f["constrained_columns"]), f["referred_table"])
                           for f in inspector.get_foreign_keys(table)))
            for table in inspector.get_table_names()}


def test_a_release_database_gains_what_the_schema_added(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = released_database(tmp_path / "old.db")
    with caplog.at_level(logging.INFO, logger="capandex.db"):
        engine = get_engine(f"sqlite:///{path}")
    changes = {r.getMessage().removeprefix(f"local database {path}: ") for r in caplog.records}
    assert {"created table optimizations", "created table optimization_batches", "added column orders.kind",
            "added column orders.trigger_price", "added column positions.note"} <= changes
    assert shape(engine) == shape(get_engine(f"sqlite:///{tmp_path / 'new.db'}"))
    with transaction(engine=engine) as conn:
        assert conn.execute(select(orders.c.kind, orders.c.trigger_price)).all() == [("market", None)]
        conn.execute(insert(orders).values(id="ord_2", user_id=USER, execution_id="exe_1", client_order_id="c2",
                                           symbol="BTC/USDT", side="sell", status="new", candle_ms=0,
                                           kind="stop", trigger_price=95.0))
        assert conn.execute(select(positions.c.note)).all() == []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="capandex.db"):
        upgrade_sqlite(engine, str(path))  # the next start: nothing left to do
    assert caplog.records == []


def test_what_cannot_be_added_is_refused_naming_the_file(tmp_path: Path) -> None:
    # an optimizations table without its NOT NULL, default-less ``method`` column
    path = released_database(tmp_path / "odd.db", "create table optimizations (id varchar(64) primary key, "
                                                  "user_id char(32) not null, flow_id varchar(64) not null);")
    with pytest.raises(Misconfigured) as refused:
        get_engine(f"sqlite:///{path}")
    assert str(path) in refused.value.message and "optimizations.method" in refused.value.message
    assert "move the file away" in refused.value.message and "Nothing was changed" in refused.value.message
    with sqlite3.connect(path) as db:  # nothing was changed
        assert "kind" not in {row[1] for row in db.execute("pragma table_info(orders)")}
        assert db.execute("select count(*) from sqlite_master where name = 'optimization_batches'").fetchone() == (0,)
