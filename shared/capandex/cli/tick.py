"""``capandex tick [--at ISO8601]``: one pass of the live engine (scheduler, then the workers)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tick", help="run one pass of the live engine (as EventBridge + SQS do)")
    parser.add_argument("--at", metavar="ISO8601",
                        help="replay the pass as if the clock read this time (paper executions only)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from capandex.cli.common import announce_data_dir
    from capandex.errors import ValidationFailed, field_problem
    from capandex.live.performance import parse_bound
    from capandex.live.ticks import run_pass
    from capandex.timeutil import from_ms, iso_utc, utcnow

    at = parse_bound(args.at, "--at") if args.at is not None else None
    if args.at is not None and at is None:  # `--at ""` (an unset variable) would tick live executions now
        raise ValidationFailed("Invalid input: --at.", details=[field_problem(
            "--at", "is empty; give an ISO 8601 moment of the past, or leave --at out for now")])
    if at is not None and at > utcnow():
        # no exchange has a candle of the future: the pass would do nothing, and say nothing of why
        raise ValidationFailed("Invalid input: --at.", details=[field_problem(
            "--at", "is in the future; a replay moves through the past (leave --at out for now)")])
    announce_data_dir()
    outcomes = run_pass(at)
    for o in outcomes:
        extra = f" ({o.error})" if o.error else ""
        # a pass processes every candle closed since the last one: this is the last it reached
        print(f"{o.execution_id} up to candle {iso_utc(from_ms(o.candle_ms))}: {o.status}, {o.fills} fill(s){extra}")
    idle = "" if outcomes else " (no running execution has a closed candle it has not processed yet)"
    print(f"{len(outcomes)} tick(s){idle}")
    return 0
