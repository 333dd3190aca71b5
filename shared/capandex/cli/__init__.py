"""The ``capandex`` console script.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``handler``; modules are imported only here, and each imports its heavy
dependencies inside its handler so ``capandex --help`` stays instant.
"""

from __future__ import annotations

import argparse
import difflib
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
    ``{"error": {"code", "message", "details"?}}`` goes to stdout instead. What is not the input's
    fault (an exchange that cannot be reached, a server error: the API's 5xx) exits 1, so a script
    can tell "retry later" from "fix the command"."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    check_option_names(parser, argv)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CapandexError as exc:
        report_error(exc, as_json=bool(getattr(args, "json", False)))
        return 1 if exc.status >= 500 else 2
    except KeyboardInterrupt:
        return 130


def check_option_names(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Exit 2 naming an option no (sub)command defines, and the one it resembles. argparse checks
    required options first, so ``--exchnage kraken`` would be reported as "--exchange is required"
    and the typo never named."""
    for token in argv:
        if token == "--":
            return
        commands = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        if token in commands:
            parser = commands[token]
            continue
        if not token.startswith("--") or token in ("--help",):
            continue
        name = token.split("=", 1)[0]
        known = [option for option in parser._option_string_actions if option.startswith("--")]
        if name in known or sum(option.startswith(name) for option in known) == 1:  # argparse's abbreviations
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        parser.error(f"unknown option {name}" + (f"; did you mean {close[0]}?" if close else ""))


def report_error(exc: CapandexError, *, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(exc.to_body()))
        return
    problems = [(f"node {p['nodeId']!r} " if p.get("nodeId") else "") + f"{p.get('field', '')}: {p.get('message', '')}"
                for p in exc.details or []]
    if len(problems) == 1 and problems[0] in exc.message:  # the message already says it
        problems = []
    print("\n".join([f"error: {exc.message}", *(f"  {line}" for line in problems)]), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
