"""Running a study's batches: in this process or in a process pool, streaming, with progress.

:func:`run_study` asks the study for batches and evaluates them — at most ``2 × workers`` in flight,
so memory stays bounded whatever the size of the space — until the study is finished. With
``workers > 1`` the batches run in a ``spawn`` process pool whose workers receive the flow and the
candles once (:func:`_install`) and keep an :class:`Evaluator` (one :class:`TrialRunner` per
scope), the same one the Step Functions batch task runs (:func:`capandex.research.jobs.batch_job`).
``cancel`` is polled between batches; when it answers True no new batch starts and
:class:`Cancelled` is raised.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from capandex.engine import Candles
from capandex.research.batch import Trial, TrialRunner
from capandex.research.study import Batch, Scope, Study

#: candle-trials one batch should hold (~0.2-1 s of work on one core)
BATCH_CANDLE_TRIALS = 20_000_000
#: below this many candle-trials in all a process pool costs more than it saves (its spawned
#: interpreters take a second or more each to start, several on a busy machine)
POOL_CANDLE_TRIALS = 200_000_000
MAX_BATCH_TRIALS = 500

Progress = Callable[[int, int], None]


class Cancelled(Exception):
    """The optimisation was cancelled; no new batch was started after the request."""


@dataclass(frozen=True, slots=True)
class Costs:
    """Capital in quote currency, fee and slippage as fractions; None takes the flow's settings."""

    capital: float | None = None
    fee: float | None = None
    slippage: float | None = None

    def to_json(self) -> dict[str, float | None]:
        return {"capital": self.capital, "fee": self.fee, "slippage": self.slippage}


def batch_size(candles: int) -> int:
    """Trials per batch for ``candles`` candles: :data:`BATCH_CANDLE_TRIALS` of work, 1 to
    :data:`MAX_BATCH_TRIALS` trials."""
    return max(1, min(MAX_BATCH_TRIALS, BATCH_CANDLE_TRIALS // max(candles, 1)))


def scope_candles(candles: Candles, scope: Scope) -> Candles:
    """The candles of a scope's range ``[start_ms, end_ms)``."""
    start = 0 if scope.start_ms is None else int(np.searchsorted(candles.time, scope.start_ms))
    stop = len(candles) if scope.end_ms is None else int(np.searchsorted(candles.time, scope.end_ms))
    return candles.slice(start, stop)


class Evaluator:
    """Evaluates batches of one optimisation in this process, one :class:`TrialRunner` per scope."""

    def __init__(self, document: Mapping[str, Any], candles: Candles, scopes: list[Scope], costs: Costs) -> None:
        self.document, self.candles, self.scopes, self.costs = document, candles, scopes, costs
        self._runners: dict[int, TrialRunner] = {}

    def __call__(self, batch: Batch) -> list[Trial]:
        runner = self._runners.get(batch.scope)
        if runner is None:
            scope = self.scopes[batch.scope]
            runner = self._runners[batch.scope] = TrialRunner(
                self.document, scope_candles(self.candles, scope), capital=self.costs.capital, fee=self.costs.fee,
                slippage=self.costs.slippage, blocks=scope.blocks)
        return runner.run(batch.items)


def run_study(study: Study, evaluator: Evaluator, *, workers: int = 1, size: int | None = None,
              progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> None:
    """Evaluate every batch of ``study`` (see the module docstring).

    Raises:
        Cancelled: ``cancel()`` answered True.
    """
    size = size or batch_size(len(evaluator.candles))
    if progress:
        progress(study.evaluated, study.total)
    if workers <= 1:
        while (batch := study.ask(size)) is not None or not study.finished:
            if batch is None:  # cannot happen in-process: every batch is told before the next ask
                raise RuntimeError("study waits for results nobody is computing")
            _check(cancel)
            study.tell(batch, evaluator(batch))
            if progress:
                progress(study.evaluated, study.total)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a threaded server process
    candles = evaluator.candles
    arrays = {name: getattr(candles, name) for name in ("time", "open", "high", "low", "close", "volume")}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_install,
                             initargs=(dict(evaluator.document), arrays, evaluator.scopes, evaluator.costs)) as pool:
        inflight: dict[Future[list[Trial]], Batch] = {}
        try:
            while not study.finished or inflight:
                while len(inflight) < 2 * workers and (batch := study.ask(size)) is not None:
                    _check(cancel)
                    inflight[pool.submit(_evaluate_installed, batch)] = batch
                if not inflight:
                    if study.finished:
                        break
                    raise RuntimeError("study waits for results nobody is computing")
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    study.tell(inflight.pop(future), future.result())
                if progress:
                    progress(study.evaluated, study.total)
        except BaseException:
            for future in inflight:
                future.cancel()
            raise


def default_workers() -> int:
    """Processes for a local run: the CPUs this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _check(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("the optimisation was cancelled")


_installed: Evaluator | None = None


def _install(document: dict[str, Any], arrays: dict[str, np.ndarray], scopes: list[Scope], costs: Costs) -> None:
    """Pool initializer: keep the flow and candles in the worker process."""
    global _installed
    _installed = Evaluator(document, Candles(**arrays), scopes, costs)


def _evaluate_installed(batch: Batch) -> list[Trial]:
    if _installed is None:
        raise RuntimeError("worker not initialised")
    return _installed(batch)
