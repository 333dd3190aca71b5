"""``capandex backtest``: run the engine on a flow file, exactly as the API does (DESIGN.md §6)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from capandex.errors import BadRequest


def register(subparsers: Any) -> None:
    """Add the ``backtest`` subcommand."""
    parser = subparsers.add_parser(
        "backtest", help="backtest a flow on a candle CSV or on exchange data",
        description="Backtest FLOW.json. Unset options take the flow's settings, then the defaults "
                    "(capital 10000, fee 0.001, slippage 0.001).")
    add_run_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print metrics, trades and equity as JSON")
    parser.add_argument("--plot", metavar="FILE", help="write the report: FILE.html (interactive, works offline) "
                                                       "or FILE.png")
    parser.set_defaults(handler=run)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """FLOW.json, where the candles come from, and the costs: shared by ``backtest`` and ``optimize``."""
    parser.add_argument("flow", metavar="FLOW.json", help="the flow document")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--candles", metavar="FILE.csv", help="candles: header row, time + OHLCV columns")
    source.add_argument("--exchange", help="download candles from this exchange (an id of GET /api/exchanges, "
                                           "e.g. binance); cached like the API's")
    parser.add_argument("--symbol", help="trading pair, e.g. BTC/USDT (with --exchange)")
    parser.add_argument("--timeframe", help="candle timeframe, e.g. 1h (with --exchange)")
    parser.add_argument("--start", help="start date, ISO 8601 (with --exchange)")
    parser.add_argument("--end", help="end date, ISO 8601 (with --exchange)")
    parser.add_argument("--capital", type=float, help="initial capital in quote currency")
    parser.add_argument("--fee", type=float, help="fee rate per side, e.g. 0.001 for 0.1 %%")
    parser.add_argument("--slippage", type=float, help="slippage fraction, e.g. 0.001")


def run(args: argparse.Namespace) -> int:
    from capandex.backtests import core
    from capandex.cli.common import announce_data_dir
    from capandex.engine.flow import validate_flow

    if args.exchange:  # downloads are cached in the data directory; --candles touches nothing there
        announce_data_dir(quiet=args.json)
    check_options(args)
    flow = read_flow(Path(args.flow))
    validated = validate_flow(flow)
    candles = load_candles(args)
    # the API's run: exchange gaps become a warning, said as the API says it
    result = core.run(validated, candles, capital=args.capital, fee=args.fee, slippage=args.slippage)
    if args.plot:
        from capandex.report import write_report

        settings = flow.get("settings") or {}
        write_report(result, candles, validated, args.plot, exchange=args.exchange or settings.get("exchange", ""),
                     symbol=args.symbol or settings.get("symbol", ""),
                     timeframe=args.timeframe or settings.get("timeframe", ""))
    if args.json:
        sys.stdout.write(result.to_json() + "\n")
    else:
        _print_summary(result)
    return 0


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
    try:
        from capandex.marketdata import fetch_candles, progress_bar
    except ImportError as exc:
        raise BadRequest("downloading candles is not available in this build (capandex.marketdata "
                         "is missing); use --candles FILE.csv") from exc
    from capandex.backtests.service import check_range
    from capandex.timeutil import utcnow

    # the API's date rules (ISO 8601, UTC unless an offset is given, start < end, end not in the
    # future), without its one-year cap: a local run may take as long as its user likes
    span = check_range(args.start, args.end, args.timeframe, utcnow(), fields=("--start", "--end"),
                       max_candles=None)
    with progress_bar(f"{args.symbol} {args.timeframe}") as bar:
        return fetch_candles(args.exchange, args.symbol, args.timeframe, span.start_ms, span.end_ms, progress=bar)


def _print_summary(result: Any) -> None:
    m = result.metrics
    pf = "n/a (no losing trade)" if m["profitFactor"] is None else f"{m['profitFactor']:.3f}"
    lines = [
        f"pnl                {m['pnl']:,.2f} ({m['pnlPercent']:.2f} %)",
        f"trades             {m['totalTrades']} ({m['winningTrades']} won, {m['losingTrades']} lost, "
        f"win rate {m['winRate'] * 100:.1f} %)",
        f"max drawdown       {m['maxDrawdown']:,.2f} ({m['maxDrawdownPercent']:.2f} %)",
        f"sharpe ratio       {m['sharpeRatio']:.3f}",
        f"profit factor      {pf}",
        f"final equity       {result.equity[-1]:,.2f}",
    ]
    lines += [f"warning: {w}" for w in result.warnings]
    print("\n".join(lines))
