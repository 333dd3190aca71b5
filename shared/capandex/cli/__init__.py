"""The ``capandex`` console script.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``handler``; modules are imported only here, and each imports its heavy
dependencies inside its handler so ``capandex --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from capandex.errors import CapandexError

#: subcommand modules, in ``--help`` order
COMMANDS = ("serve", "token", "backtest", "tick", "vault", "db")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="capandex", description="Capandex backend tools.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"capandex.cli.{name}")
        except ModuleNotFoundError as exc:  # a subsystem not built yet
            if exc.name != f"capandex.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; bad input ends in a one-line ``error: ...`` on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CapandexError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
