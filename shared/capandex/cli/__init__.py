"""The ``capandex`` console script.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``handler``; modules are imported only here, and each imports its heavy
dependencies inside its handler so ``capandex --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from capandex.errors import CapandexError

#: subcommand modules, in ``--help`` order
COMMANDS = ("serve", "token", "backtest", "optimize", "candles", "tick", "vault", "db")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="capandex", description="Capandex backend tools.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"capandex.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Bad input ends in exit code 2 with ``error: ...`` on stderr followed by
    every problem (``  FIELD: why``, one per line); with ``--json`` the API's error body
    ``{"error": {"code", "message", "details"?}}`` goes to stdout instead."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CapandexError as exc:
        report_error(exc, as_json=bool(getattr(args, "json", False)))
        return 2
    except KeyboardInterrupt:
        return 130


def report_error(exc: CapandexError, *, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(exc.to_body()))
        return
    lines = [f"error: {exc.message}"]
    for problem in exc.details or []:
        node = f"node {problem['nodeId']!r} " if problem.get("nodeId") else ""
        lines.append(f"  {node}{problem.get('field', '')}: {problem.get('message', '')}")
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
