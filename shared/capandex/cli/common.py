"""What the commands share: saying where local state lives (every command that touches it) and
where a file they wrote went, and the inputs of a run — FLOW.json, its candles and the costs —
that ``backtest`` and ``optimize`` take alike."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capandex.errors import BadRequest

if TYPE_CHECKING:
    from capandex.engine import Flow


def announce_data_dir(*, quiet: bool = False) -> None:
    """Print the data directory (database, vault key, candle store) on stderr, so a command run
    from another folder or with another ``CAPANDEX_DATA_DIR`` cannot silently use other data.
    ``quiet`` (e.g. ``--json``) skips it. Nothing is printed when a database URL is configured
    and no local store is used."""
    from capandex.config import get_settings

    if quiet:
        return
    settings = get_settings()
    database = "" if settings.database_url else " (SQLite database, vault key, candle store)"
    print(f"data: {settings.data_dir}{database}", file=sys.stderr, flush=True)


def announce_written(path: str, what: str = "report") -> None:
    """Say on stderr where a file went (stdout stays the result, e.g. ``--json``)."""
    print(f"{what}: {Path(path).resolve()}", file=sys.stderr, flush=True)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """FLOW.json, where the candles come from, and the costs: shared by ``backtest`` and ``optimize``."""
    parser.add_argument("flow", metavar="FLOW.json", help="the flow document")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--candles", metavar="FILE.csv", help="candles: header row, time + OHLCV columns")
    source.add_argument("--exchange", help="this exchange's candles (an id of GET /api/exchanges, e.g. binance): "
                                           "from the store when imported (capandex candles import) or cached, "
                                           "else downloaded and cached like the API's")
    parser.add_argument("--symbol", help="trading pair, e.g. BTC/USDT (with --exchange)")
    parser.add_argument("--timeframe", help="candle timeframe, e.g. 1h (with --exchange)")
    parser.add_argument("--start", help="start date, ISO 8601 (with --exchange)")
    parser.add_argument("--end", help="end date, ISO 8601 (with --exchange)")
    parser.add_argument("--capital", type=float, help="initial capital in quote currency")
    parser.add_argument("--fee", type=float, help="fee rate per side, e.g. 0.001 for 0.1 %%")
    parser.add_argument("--slippage", type=float, help="slippage fraction, e.g. 0.001")


def read_run_flow(args: argparse.Namespace) -> tuple[dict[str, Any], Flow]:
    """The start of a run: the data directory announced when candles may be downloaded into it
    (``--candles`` touches nothing there), the options checked, FLOW.json read and validated; the
    document and the validated flow."""
    from capandex.engine import validate_flow

    if args.exchange:
        announce_data_dir(quiet=args.json)
    check_options(args)
    document = read_flow(Path(args.flow))
    return document, validate_flow(document)


def check_options(args: argparse.Namespace) -> None:
    """Every bad money option (and a --plot of the wrong kind) at once; the engine would name the
    flow's setting instead."""
    from capandex.errors import ValidationFailed, field_problem

    problems = []
    if args.capital is not None and not args.capital > 0:
        problems.append(field_problem("--capital", f"must be greater than 0 (got {args.capital:g})"))
    for name in ("fee", "slippage"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < 1:
            problems.append(field_problem(f"--{name}", f"must be a fraction from 0 to below 1 (got {value:g})"))
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".html", ".htm"):
        problems.append(field_problem("--plot", f"{args.plot} must end in .png or .html"))
    if problems:
        raise ValidationFailed("Invalid options: " + ", ".join(p["field"] for p in problems) + ".", details=problems)


def read_flow(path: Path) -> dict[str, Any]:
    """A flow document from a JSON file; BadRequest naming the file and line when it is not one."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadRequest(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc


def load_candles(args: argparse.Namespace) -> Any:
    """The candles of --candles FILE.csv, or downloaded for --exchange/--symbol/--timeframe/--start/--end
    (cached like the API's, with a progress bar)."""
    if args.candles:
        from capandex.engine.csvio import read_candles_csv

        return read_candles_csv(args.candles)
    missing = [f"--{name}" for name in ("symbol", "timeframe", "start", "end") if not getattr(args, name)]
    if missing:
        raise BadRequest(f"--exchange needs {', '.join(missing)}")
    from capandex.backtests.service import check_range
    from capandex.marketdata import fetch_candles, progress_bar
    from capandex.timeutil import utcnow

    # the API's date rules (ISO 8601, UTC unless an offset is given, start < end, end not in the
    # future), without its one-year cap: a local run may take as long as its user likes
    span = check_range(args.start, args.end, args.timeframe, utcnow(), fields=("--start", "--end"),
                       max_candles=None)
    with progress_bar(f"{args.symbol} {args.timeframe}") as bar:
        return fetch_candles(args.exchange, args.symbol, args.timeframe, span.start_ms, span.end_ms, progress=bar)
