"""Bring a local SQLite database made by an earlier release up to the current schema.

Postgres is upgraded by the files in ``supabase/migrations/`` (:mod:`capandex.db.migrations`). A
SQLite database (the embedded default of ``capandex serve`` and the CLI) has no migration history,
and ``metadata.create_all`` creates missing tables only, never columns, nor the indexes of a table
that exists. So every time an engine opens the file, :func:`upgrade_sqlite` compares it with the
schema and adds, in one transaction, what can be added without judgement:

* a missing table, with its indexes;
* a missing column that is nullable or has a ``server_default`` (existing rows get NULL or the
  default), unless it is a key, a reference or unique (SQLite cannot add those to a table);
* a missing index of an existing table (a unique one fails if the rows already break it).

Each change is logged at INFO, once. Anything else (a missing ``NOT NULL`` column without a
default, a key, reference or unique column, an index the rows break) raises
:class:`~capandex.errors.Misconfigured` naming the file and what to do, and changes nothing.
Changed types, dropped or renamed columns are not detected: the schema only ever adds.
"""

from __future__ import annotations

import logging

from sqlalchemy import Column, Connection, Engine, Inspector, UniqueConstraint, inspect
from sqlalchemy.exc import DatabaseError
from sqlalchemy.schema import CreateColumn, CreateIndex

from capandex.db.schema import metadata
from capandex.errors import Misconfigured

logger = logging.getLogger("capandex.db")


def upgrade_sqlite(engine: Engine, path: str) -> None:
    """Create what the SQLite database at ``path`` lacks (see the module docstring).

    Raises:
        Misconfigured: a missing column or index that cannot be added automatically.
    """
    with engine.begin() as conn:  # one transaction: an upgrade that fails leaves the file as it was
        inspector = inspect(conn)
        existing = set(inspector.get_table_names())
        changes = _planned(inspector, conn, existing, path)
        metadata.create_all(conn)
        for what, ddl in changes:
            try:
                conn.exec_driver_sql(ddl)
            except DatabaseError as exc:
                raise _cannot(path, f"{what} failed ({exc.orig})") from None
    created = [f"created table {t.name}" for t in metadata.sorted_tables if existing and t.name not in existing]
    for what in created + [what for what, _ in changes]:
        logger.info("local database %s: %s", path, what)


def _planned(inspector: Inspector, conn: Connection, existing: set[str], path: str) -> list[tuple[str, str]]:
    """What to add to the tables that exist, as (what, DDL) pairs, or :class:`Misconfigured`."""
    changes: list[tuple[str, str]] = []
    problems: list[str] = []
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue  # create_all makes it whole
        have = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if _addable(column):
                spec = CreateColumn(column).compile(dialect=conn.dialect)
                changes.append((f"added column {table.name}.{column.name}",
                                f"ALTER TABLE {table.name} ADD COLUMN {spec}"))
            else:
                problems.append(f"column {table.name}.{column.name} is missing and cannot be added automatically "
                                f"(a key, reference, unique, or NOT NULL without a default)")
        indexed = {index["name"] for index in inspector.get_indexes(table.name)}
        changes += [(f"created index {index.name}", str(CreateIndex(index).compile(dialect=conn.dialect)))
                    for index in sorted(table.indexes, key=lambda i: i.name or "") if index.name not in indexed]
    if problems:
        raise _cannot(path, "; ".join(problems))
    return changes


def _addable(column: Column[object]) -> bool:
    unique = column.unique or any(isinstance(c, UniqueConstraint) and column.name in c.columns
                                  for c in column.table.constraints)
    plain = not (column.primary_key or column.foreign_keys or unique)
    return plain and (column.nullable or column.server_default is not None)


def _cannot(path: str, reason: str) -> Misconfigured:
    return Misconfigured(
        f"The local database {path} was made by an earlier Capandex and cannot be upgraded automatically: "
        f"{reason}. Nothing was changed. To start afresh, move the file away (the next start creates a new "
        f"one); to keep its data, make the change by hand (sqlite3 {path}) as capandex/db/schema.py defines it.")

