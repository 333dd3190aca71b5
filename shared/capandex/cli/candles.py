"""``capandex candles import|list``: candles from files into the local store, and what it holds.

Imported candles serve backtests, optimisations and paper replays exactly as downloaded ones do,
without reaching the exchange (see :mod:`capandex.marketdata.importer` for the formats).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("candles", help="import candle files into the store, list what it holds",
                                   description="Candles without an exchange: import CSV files or Binance "
                                               "public-data kline archives, list the stored series.")
    commands = parser.add_subparsers(dest="candles_command", required=True, metavar="ACTION")
    importing = commands.add_parser(
        "import", help="validate candle files and store them",
        description="Validate FILEs (CSV with a header, or Binance kline .csv/.zip: 12 columns, open time in "
                    "ms or µs) and store them as EXCHANGE's SYMBOL at TIMEFRAME. Every problem is listed "
                    "with its file and line; nothing is stored unless all rows are valid.")
    importing.add_argument("files", nargs="+", metavar="FILE", help=".csv or .zip files, in any order")
    importing.add_argument("--exchange", required=True, help="the exchange the candles are from, e.g. binance")
    importing.add_argument("--symbol", required=True, help="trading pair, e.g. BTC/USDT")
    importing.add_argument("--timeframe", required=True, help="1m, 5m, 15m, 1h, 4h or 1d")
    importing.add_argument("--json", action="store_true", help="print the result (or the errors) as JSON")
    importing.set_defaults(handler=run_import)
    listing = commands.add_parser("list", help="show the stored series (exchange, symbol, timeframe, range, gaps)")
    listing.add_argument("--json", action="store_true", help="print the series as JSON")
    listing.set_defaults(handler=run_list)


def run_import(args: argparse.Namespace) -> int:
    from capandex.cli.common import announce_data_dir
    from capandex.exchanges.registry import resolve
    from capandex.marketdata.importer import import_files

    announce_data_dir(quiet=args.json)
    resolve(args.exchange)  # one Capandex offers (no network: the registry is local)
    result = import_files(args.files, args.exchange, args.symbol, args.timeframe)
    summary = _result_dict(result, args)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"imported {summary['candles']:,} {args.timeframe} candles of {args.exchange} {args.symbol}: "
          f"{summary['first']} to {summary['last']}")
    if summary["gaps"]:
        first = summary["gaps"][0]
        print(f"gaps: {summary['missing']} missing candles in {len(summary['gaps'])} gaps (first {first['start']} "
              f"to {first['end']}); backtests run over the candles that exist and warn about them")
    for hole in summary["holes"]:
        print(f"kept the candles stored before: the {hole['missing']:,} between them and these ({hole['start']} to "
              f"{hole['end']}) count as a gap until you import them")
    return 0


def _result_dict(result: Any, args: argparse.Namespace) -> dict[str, Any]:
    from capandex.timeutil import iso_utc_array

    first, last = iso_utc_array([result.first_ms, result.end_ms - _step(args.timeframe)])
    gaps = [g.to_dict() for g in result.gaps]
    return {"exchange": args.exchange, "symbol": args.symbol, "timeframe": args.timeframe, "candles": result.rows,
            "first": first, "last": last, "gaps": gaps, "missing": sum(g["missing"] for g in gaps),
            "holes": [h.to_dict() for h in result.holes]}


def _step(timeframe: str) -> int:
    from capandex.marketdata.chunks import timeframe_ms

    return timeframe_ms(timeframe)


def run_list(args: argparse.Namespace) -> int:
    from capandex.cli.common import announce_data_dir
    from capandex.marketdata.importer import list_series

    announce_data_dir(quiet=args.json)
    series = [s.to_dict() for s in list_series()]
    if args.json:
        print(json.dumps({"series": series}))
        return 0
    if not series:
        print("no candles stored yet (capandex candles import FILE… --exchange X --symbol S --timeframe T)")
        return 0
    print(f"{'exchange':<10} {'symbol':<12} {'tf':<4} {'candles':>9}  {'first':<20}  {'last':<20}  gaps")
    for s in series:
        gaps = f"{len(s['gaps'])} ({s['missing']} missing)" if s["gaps"] else "none"
        print(f"{s['exchange']:<10} {s['symbol']:<12} {s['timeframe']:<4} {s['candles']:>9,}  {s['first']:<20}  "
              f"{s['last']:<20}  {gaps}")
    return 0
