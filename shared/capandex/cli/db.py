"""``capandex db sql [--table NAME]…``: print Postgres DDL rendered from the schema.

Without ``--table``: the whole current schema, for a NEW, empty database. With ``--table``: the
block a delta migration that adds those tables contains. An existing database is upgraded by the
files in ``supabase/migrations/`` (see :mod:`capandex.db.migrations`), never by this whole script.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="database tools")
    parser.add_argument("action", choices=["sql"],
                        help="sql: print the whole schema for a new database (or --table's block for a delta)")
    parser.add_argument("--table", action="append", default=[], metavar="NAME",
                        help="only this table (repeatable): its DDL, indexes, RLS, policy and grants")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from capandex.db.migrations import render_postgres, render_tables
    from capandex.errors import BadRequest

    if not args.table:
        print(render_postgres(), end="")
        return 0
    try:
        print(render_tables(args.table), end="")
    except KeyError as exc:
        raise BadRequest(f"--table: {exc.args[0]}") from None
    return 0
