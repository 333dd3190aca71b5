"""``capandex db sql``: print the Postgres migration rendered from the schema."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="database tools")
    parser.add_argument("action", choices=["sql"], help="sql: print the Supabase migration")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from capandex.db.migrations import render_postgres

    print(render_postgres(), end="")
    return 0
