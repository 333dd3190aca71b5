"""``capandex backtest``: run the engine on a flow file, exactly as the API does (DESIGN.md §6)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from capandex.cli.common import add_run_arguments, announce_written, load_candles, read_run_flow


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


def run(args: argparse.Namespace) -> int:
    from capandex.backtests import core

    flow, validated = read_run_flow(args)
    candles = load_candles(args)
    # the API's run: exchange gaps become a warning, said as the API says it
    result = core.run(validated, candles, capital=args.capital, fee=args.fee, slippage=args.slippage)
    if args.plot:
        from capandex.report import write_report

        settings = flow.get("settings") or {}
        write_report(result, candles, validated, args.plot, exchange=args.exchange or settings.get("exchange", ""),
                     symbol=args.symbol or settings.get("symbol", ""),
                     timeframe=args.timeframe or settings.get("timeframe", ""))
        announce_written(args.plot)
    if args.json:
        sys.stdout.write(result.to_json() + "\n")
    else:
        _print_summary(result)
    return 0


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
