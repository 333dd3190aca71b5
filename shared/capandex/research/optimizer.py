"""``optimize()``: search a flow's parameters over candles, then test the winner (DESIGN.md §8).

>>> from capandex.research import optimize
>>> result = optimize(flow, candles, {"space": {"fast.period": {"min": 5, "max": 50, "step": 5},
...                                             "slow.period": {"min": 20, "max": 200, "step": 10},
...                                             "where": ["fast.period < slow.period"]},
...                                   "objective": "sharpeRatio", "constraints": {"minTrades": 10},
...                                   "walkForward": {"train": "90d", "test": "30d"},
...                                   "monteCarlo": {"resamples": 1000}})   # doctest: +SKIP
>>> result["best"]["params"], result["overfitting"]["pbo"]["pbo"]          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from capandex.engine import API_EQUITY_POINTS, Candles, validate_flow
from capandex.research.overfitting import BLOCKS
from capandex.research.request import OptimizeSpec, parse_request
from capandex.research.runner import Costs, Evaluator, Progress, run_study
from capandex.research.study import Scope, Study
from capandex.research.summary import summarize
from capandex.research.walkforward import Window, candle_span, windows_between


def plan_scopes(spec: OptimizeSpec, time_ms: Any) -> tuple[list[Scope], list[Window]]:
    """The whole range (with the block statistics PBO needs), then one scope per walk-forward
    train window, ending where its test window begins.

    Raises:
        ValidationFailed: naming ``walkForward`` when the candles are too short for the windows.
    """
    windows = [] if spec.walk_forward is None else windows_between(*candle_span(time_ms), spec.walk_forward)
    return scopes_for(windows), windows


def scopes_for(windows: list[Window]) -> list[Scope]:
    """The whole range, then each window's train range."""
    return [Scope("whole range", blocks=BLOCKS)] + [Scope(f"train window {w.number}", w.train_start, w.train_end)
                                                   for w in windows]


def optimize(flow: Mapping[str, Any], candles: Any, request: Mapping[str, Any] | OptimizeSpec, *,
             capital: float | None = None, fee: float | None = None, slippage: float | None = None,
             workers: int = 1, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
             equity_points: int | None = API_EQUITY_POINTS, all_trials: bool = False,
             batch: int | None = None) -> dict[str, Any]:
    """Optimise ``flow``'s parameters over ``candles`` and test the winner.

    Args:
        flow: the flow document (validated here).
        candles: anything :func:`capandex.engine.backtest` accepts.
        request: the request of :func:`capandex.research.request.parse_request` (or a parsed one).
        capital, fee, slippage: as in :func:`capandex.engine.backtest`, except that capital None
            (the default here) takes the flow's ``settings.initialCapital`` (then 10,000).
        workers: processes evaluating batches (1: this process).
        progress: called with ``(trials evaluated, trials in all)`` after each batch.
        cancel: polled between batches; True stops the run (:class:`~capandex.research.runner.Cancelled`).
        equity_points: the walk-forward equity curve's length cap (None: every candle).
        all_trials: add ``"trials"``, every trial of the whole range in trial order.
        batch: trials per batch (default: :func:`~capandex.research.runner.batch_size` of the candles).

    Returns:
        ``{"method", "objective", "constraints", "evaluated", "refused", "feasible", "best": {"params",
        "metrics"} | None, "top": [...], "robustness"?, "overfitting"?, "walkForward"?, "trials"?}``;
        see :mod:`capandex.research.summary`.

    Raises:
        ValidationFailed: a bad flow, request or candles (every problem of the request at once).
        Cancelled: ``cancel()`` answered True.
    """
    validated = validate_flow(flow)
    spec = request if isinstance(request, OptimizeSpec) else parse_request(request, validated)
    data = Candles.from_any(candles)
    scopes, windows = plan_scopes(spec, data.time)
    costs = Costs(capital, fee, slippage)
    study = Study(spec, scopes)
    run_study(study, Evaluator(flow, data, scopes, costs), workers=workers, size=batch, progress=progress,
              cancel=cancel)
    result = summarize(study, flow, data, costs, windows, equity_points=equity_points)
    if all_trials:
        table = study.tables[0]
        result["trials"] = [table.trial(row, spec.space.whole) for row in table.numbers.argsort(kind="stable")]
    return result
