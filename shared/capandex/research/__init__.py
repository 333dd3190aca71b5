"""Strategy research: parameter optimisation, walk-forward, Monte Carlo and overfitting tests.

Public API::

    from capandex.research import optimize, parse_request, TrialRunner
    result = optimize(flow, candles, {"space": {...}, "objective": "sharpeRatio", "method": "tpe"})

Definitions (trial, added metrics, walk-forward, Monte Carlo, PBO, Deflated Sharpe Ratio) follow
DESIGN.md §8; each module's docstring cites its source. The pieces, in the order a run uses them:
:mod:`.space` and :mod:`.request` (validation), :mod:`.search` (grid, random, Optuna TPE),
:mod:`.study` (scopes, batches, trial tables), :mod:`.batch` (the batch engine), :mod:`.runner`
(in-process or process pool), :mod:`.walkforward`, :mod:`.montecarlo`, :mod:`.overfitting` and
:mod:`.summary` (the reduce step). Nothing heavy is imported by this package itself: Optuna only
when a TPE search asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Cancelled", "TrialRunner", "optimize", "parse_request"]

if TYPE_CHECKING:
    from capandex.research.batch import TrialRunner
    from capandex.research.optimizer import optimize
    from capandex.research.request import parse_request
    from capandex.research.runner import Cancelled

_EXPORTS = {"TrialRunner": "batch", "optimize": "optimizer", "parse_request": "request", "Cancelled": "runner"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'capandex.research' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"capandex.research.{module}"), name)
    globals()[name] = value
    return value
