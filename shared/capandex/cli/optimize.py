"""``capandex optimize``: search a flow's parameters on a candle CSV or exchange data.

    capandex optimize flow.json --candles btc-1h.csv \\
        --param fast.period=5:50:5 --param slow.period=20:200:10 --where "fast.period < slow.period" \\
        --objective sharpeRatio --min-trades 10 --walk-forward 90d:30d --monte-carlo 1000 --plot out.html

``--param NODE.FIELD=`` takes ``START:STOP:STEP`` (inclusive; ``START:STOP`` steps by 1), a list
``a,b,c`` or one value. The run is the library's :func:`capandex.research.optimize` — the same
batches the API runs — on this machine's cores (``--workers``), with a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from capandex.cli.common import add_run_arguments, announce_written, load_candles, read_run_flow
from capandex.errors import BadRequest


def register(subparsers: Any) -> None:
    """Add the ``optimize`` subcommand."""
    parser = subparsers.add_parser(
        "optimize", help="optimise a flow's parameters (grid, random or TPE), walk forward, test robustness",
        description="Search FLOW.json's node parameters over candles and test the winner (walk-forward, Monte "
                    "Carlo, cost stress, PBO, Deflated Sharpe Ratio). Unset costs take the flow's settings.")
    add_run_arguments(parser)
    parser.add_argument("--param", action="append", required=True, metavar="NODE.FIELD=START:STOP:STEP",
                        help="a parameter to vary (repeat for more); also a,b,c or one value")
    parser.add_argument("--where", action="append", metavar='"A < B"', help="a relation between parameters")
    parser.add_argument("--objective", default="sharpeRatio", help="the metric to optimise (default sharpeRatio)")
    parser.add_argument("--method", default="grid", choices=("grid", "random", "tpe"))
    parser.add_argument("--trials", type=int, help="parameter sets for random/tpe (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random/tpe and Monte Carlo (default 0)")
    parser.add_argument("--min-trades", type=int, help="constraint: at least N closed trades")
    parser.add_argument("--max-drawdown", type=float, help="constraint: maxDrawdownPercent at most P")
    parser.add_argument("--walk-forward", metavar="TRAIN:TEST", help="walk-forward windows, e.g. 90d:30d")
    parser.add_argument("--anchored", action="store_true", help="anchored walk-forward (train from the start)")
    parser.add_argument("--monte-carlo", type=int, metavar="N", help="Monte Carlo resamples of the winner's trades")
    parser.add_argument("--workers", type=int, help="processes (default: every core for large runs, else 1)")
    parser.add_argument("--json", action="store_true", help="print every trial, the winner and the tests as JSON")
    parser.add_argument("--plot", metavar="FILE", help="objective heatmap/line and walk-forward equity to "
                                                       "FILE.html or FILE.png")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from capandex.engine import Candles
    from capandex.marketdata.progress import progress_bar
    from capandex.research.optimizer import optimize
    from capandex.research.request import parse_request
    from capandex.research.runner import POOL_CANDLE_TRIALS, default_workers

    flow, validated = read_run_flow(args)
    spec = parse_request(request_from_args(args), validated)
    candles = Candles.from_any(load_candles(args))
    workers = args.workers
    if workers is None:
        work = spec.space.size if spec.method == "grid" else spec.trials
        workers = default_workers() if work * len(candles) >= POOL_CANDLE_TRIALS else 1
    with progress_bar("trials") as bar:
        result = optimize(flow, candles, spec, capital=args.capital, fee=args.fee, slippage=args.slippage,
                          workers=workers, progress=bar, equity_points=None, all_trials=args.json or bool(args.plot))
    if args.plot:
        from capandex.research.plot import write_plot

        write_plot(result, spec, args.plot)
        announce_written(args.plot, "plot")
    if args.json:
        sys.stdout.write(json.dumps(json_output(result), allow_nan=False) + "\n")
    else:
        print(summary_text(result))
    return 0


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The API's request body from the command line's options."""
    space: dict[str, Any] = dict(parse_param(text) for text in args.param)
    if args.where:
        space["where"] = list(args.where)
    request: dict[str, Any] = {"space": space, "objective": args.objective, "method": args.method,
                               "seed": args.seed}
    if args.trials is not None:
        request["trials"] = args.trials
    constraints = {key: value for key, value in (("minTrades", args.min_trades),
                                                 ("maxDrawdownPercent", args.max_drawdown)) if value is not None}
    if constraints:
        request["constraints"] = constraints
    if args.walk_forward:
        train, _, test = args.walk_forward.partition(":")
        request["walkForward"] = {"train": train, "test": test, "anchored": args.anchored}
    elif args.anchored:
        raise BadRequest("--anchored needs --walk-forward TRAIN:TEST")
    if args.monte_carlo is not None:
        request["monteCarlo"] = {"resamples": args.monte_carlo}
    return request


def parse_param(text: str) -> tuple[str, dict[str, Any]]:
    """``"fast.period=5:50:5"`` → ``("fast.period", {"min": 5, "max": 50, "step": 5})``."""
    name, equals, spec = text.partition("=")
    if not equals or not name.strip() or not spec.strip():
        raise BadRequest(f"--param {text!r}: expected NODE.FIELD=START:STOP:STEP (or a,b,c)")
    try:
        if ":" in spec:
            parts = [_number(part) for part in spec.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            return name.strip(), dict(zip(("min", "max", "step"), parts, strict=False))
        return name.strip(), {"values": [_number(part) for part in spec.split(",")]}
    except ValueError:
        raise BadRequest(f"--param {text!r}: values must be numbers (START:STOP:STEP or a,b,c)") from None


def _number(text: str) -> int | float:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def json_output(result: dict[str, Any]) -> dict[str, Any]:
    """``{"trials", "best", "evaluated", "refused", "costStress", "overfitting", "walkForward"?,
    "monteCarlo"?}``: the table of every trial and the tests of the winner."""
    robustness = result.get("robustness") or {}
    out = {"trials": result.get("trials", []), "best": result["best"], "evaluated": result["evaluated"],
           "refused": result["refused"], "costStress": robustness.get("costStress"),
           "overfitting": result.get("overfitting")}
    if "walkForward" in result:
        out["walkForward"] = result["walkForward"]
    if "monteCarlo" in robustness:
        out["monteCarlo"] = robustness["monteCarlo"]
    return out


def summary_text(result: dict[str, Any]) -> str:
    """A human summary: the winner, the top trials, walk-forward and the robustness tests."""
    objective = result["objective"]
    lines = [f"{result['evaluated']} trials ({result['refused']} refused by the flow, {result['feasible']} "
             f"satisfy the constraints), objective {objective} ({result['method']})"]
    best = result["best"]
    if best is None:
        lines.append(result.get("note", "no winner"))
        return "\n".join(lines)
    lines.append("best: " + _params(best["params"]) + "  " + _metrics(best["metrics"], objective))
    lines.append("top:")
    lines += [f"  #{t['number']:<6} {_params(t['params'])}  " + (t.get("error") or _metrics(t["metrics"], objective))
              for t in result["top"][:10]]
    wf = result.get("walkForward")
    if wf is not None:
        used, excluded = wf["windowsUsed"], wf["windowsExcluded"]
        why = f"; {excluded} left out: their train return was not positive" if excluded else ""
        lines.append(f"walk-forward {wf['train']}/{wf['test']}{' anchored' if wf['anchored'] else ''}: "
                     f"efficiency {_num(wf['efficiency'])} (mean test/train annualised return over {used} of "
                     f"{used + excluded} windows{why})")
        for row in wf["windows"]:
            oos, fitted = row["outOfSample"], row.get("inSample")
            in_sample = "" if fitted is None else f"in sample {objective} {_num(fitted[objective])}, "
            lines.append(f"  {row['window']:>3} test {row['testStart'][:10]}..{row['testEnd'][:10]}  "
                         + (row.get("note") or f"{_params(row['params'])}  {in_sample}out of sample "
                            + ("no candles" if oos is None else _metrics(oos, objective))))
        if wf["outOfSample"] is not None:
            lines.append("  stitched out of sample: " + _metrics(wf["outOfSample"]["metrics"], objective))
    robustness = result["robustness"]
    stress = robustness["costStress"]
    lines.append(f"cost stress (fee {stress['fee']:g}, slippage {stress['slippage']:g}): "
                 + _metrics(stress["metrics"], objective))
    mc = robustness.get("monteCarlo")
    if mc is not None and "bootstrap" in mc:
        boot = mc["bootstrap"]
        lines.append(f"monte carlo ({mc['resamples']} bootstrap resamples of {mc['trades']} trades): final pnl % "
                     f"p5 {boot['finalPnlPercent']['p5']:.1f} p50 {boot['finalPnlPercent']['p50']:.1f} p95 "
                     f"{boot['finalPnlPercent']['p95']:.1f}; P(loss) {boot['lossProbability']:.3f}")
    over = result["overfitting"]
    pbo = over.get("pbo")
    dsr = over.get("deflatedSharpe")
    lines.append("overfitting: PBO " + ("n/a" if pbo is None else f"{pbo['pbo']:.3f}") + ", deflated Sharpe "
                 + ("n/a" if dsr is None else f"{dsr['dsr']:.3f}" + (" (significant)" if dsr["significant"]
                                                                     else " (not significant)")))
    return "\n".join(lines)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in params.items())


def _metrics(metrics: dict[str, Any], objective: str) -> str:
    keys = dict.fromkeys([objective, "pnlPercent", "maxDrawdownPercent", "totalTrades"])
    return ", ".join(f"{key} {_num(metrics[key])}" for key in keys)


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
