"""The batch engine: many parameter sets of one flow over the same candles.

A *trial* (DESIGN.md §8) is the flow with some ``NODE_ID.FIELD`` values replaced, backtested
exactly as §5: :meth:`TrialRunner.run` returns, for every trial, the metrics that
``capandex.engine.backtest(apply_params(flow, params), candles, capital=…, fee=…, slippage=…)``
returns — bit for bit (a hypothesis test over random flows and spaces checks it) — plus
``sortinoRatio`` and ``calmarRatio``. What a batch shares:

* the candles, validated once (``backtest`` validates them on every call);
* every node output: nodes with equal structural keys (:attr:`CompiledFlow.keys`) compute equal
  arrays, so each distinct indicator configuration is computed once per batch. The runner first
  compiles every trial, counts how often each key will be used, and keeps an output only until
  its last use (:class:`SharedOutputs`), within a byte budget, so memory is bounded by the live
  working set, not by the batch;
* the day boundaries of the candles (for daily returns).

Memory per batch is O(candles × live node outputs); callers stream batches (see
:mod:`capandex.research.study`), so the number of combinations never bounds memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from capandex.engine import Candles, CompiledFlow, compile_flow, resolve_settings, validate_flow
from capandex.engine.metrics import compute_metrics, last_bar_of_day
from capandex.engine.ranges import RangeExtremes
from capandex.engine.simulator import Money, Schedule, Simulation, equity_curve, schedule, settle_many, simulate
from capandex.errors import ValidationFailed
from capandex.research.objective import added_metrics, daily_returns, range_days
from capandex.research.space import Params, apply_params

#: bytes of node outputs one runner keeps between trials (beyond that, outputs are recomputed)
CACHE_BYTES = 256 * 2**20

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class Trial:
    """One evaluated parameter set.

    ``number`` is its position in the study; ``metrics`` the seed metrics plus ``sortinoRatio`` and
    ``calmarRatio`` (None when the modified flow is refused, ``error`` then says why); ``blocks``
    (when asked for) the daily-return statistics per time block that the overfitting tests need:
    an ``(S, 3)`` array of count, sum and sum of squares of the returns in each block.
    """

    number: int
    params: Params
    metrics: dict[str, Any] | None
    error: str | None = None
    blocks: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"number", "params", "metrics"}`` (or ``"error"`` instead of metrics)."""
        out: dict[str, Any] = {"number": self.number, "params": self.params}
        if self.error is not None:
            out["error"] = self.error
        else:
            out["metrics"] = self.metrics
        return out


class SharedOutputs(MutableMapping[Hashable, Outputs]):
    """Node outputs kept across the trials of a batch until their last use.

    ``uses`` counts how often each key will be asked for; every :meth:`get` spends one use, and an
    output is dropped when its uses are spent. :meth:`__setitem__` keeps an output only while the
    kept bytes stay under ``budget`` and it will be used again.
    """

    def __init__(self, uses: Counter[Hashable], budget: int = CACHE_BYTES) -> None:
        self.uses, self.budget, self.kept_bytes = uses, budget, 0
        self._outputs: dict[Hashable, Outputs] = {}

    def get(self, key: Hashable, default: Any = None) -> Any:
        self.uses[key] -= 1
        outputs = self._outputs.get(key, default)
        if self.uses[key] <= 0 and key in self._outputs:
            del self[key]
        return outputs

    def __getitem__(self, key: Hashable) -> Outputs:
        return self._outputs[key]

    def __setitem__(self, key: Hashable, outputs: Outputs) -> None:
        size = sum(array.nbytes for array in outputs.values())
        if self.uses[key] > 0 and key not in self._outputs and self.kept_bytes + size <= self.budget:
            self._outputs[key] = outputs
            self.kept_bytes += size

    def __delitem__(self, key: Hashable) -> None:
        self.kept_bytes -= sum(array.nbytes for array in self._outputs.pop(key).values())

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)


class TrialRunner:
    """Evaluates trials of one flow over one candle series.

    Args:
        document: the flow document (its ``settings`` give capital, fee and slippage where the
            arguments below are None, as in :func:`capandex.engine.backtest`).
        candles: anything :meth:`Candles.from_any` accepts; validated once here.
        capital: initial capital in quote currency; None takes the flow's ``settings``.
        fee, slippage: fractions per side (0.001 = 0.1 %); None takes the flow's ``settings``.
        blocks: when set, each trial also gets its per-block daily-return statistics (``blocks``
            equal slices of the daily returns; see :class:`Trial`).

    Raises:
        ValidationFailed: bad candles, or capital/fee/slippage out of range.
    """

    def __init__(self, document: Mapping[str, Any], candles: Any, *, capital: float | None = None,
                 fee: float | None = None, slippage: float | None = None, blocks: int | None = None) -> None:
        self.document = document
        self.candles = Candles.from_any(candles)
        self._last_of_day = last_bar_of_day(self.candles.time)
        self._days = range_days(self.candles.time)
        self._extremes = RangeExtremes.of(self.candles)
        # parameters live on nodes, so every trial runs under the flow's own settings
        self._settings = resolve_settings(validate_flow(document), capital, fee, slippage)
        self._block_starts = _block_starts(int(self._last_of_day.sum()) - 1, blocks) if blocks else None

    def run(self, batch: Sequence[tuple[int, Params]]) -> list[Trial]:
        """Evaluate ``(number, params)`` pairs; the trials come back in the same order."""
        compiled: list[CompiledFlow | str] = []
        uses: Counter[Hashable] = Counter()
        for _, params in batch:
            try:
                flow = compile_flow(apply_params(self.document, params))
            except ValidationFailed as exc:
                compiled.append(_flow_error(exc))
                continue
            compiled.append(flow)
            uses.update(flow.keys.values())
        shared = SharedOutputs(uses)
        runs = [flow if isinstance(flow, str) else self._simulate(flow, shared) for flow in compiled]
        plans = [run for run in runs if isinstance(run, _Planned)]
        for run, money in zip(plans, settle_many([run.plan for run in plans], self._settings), strict=True):
            run.money = money
        return [Trial(number, dict(params), None, error=run) if isinstance(run, str)
                else self._trial(number, params, run) for (number, params), run in zip(batch, runs, strict=True)]

    def _simulate(self, compiled: CompiledFlow, shared: SharedOutputs) -> _Planned | Simulation:
        """Steps 1-3 of §5 (money later, for the whole batch at once); the whole simulation for a
        flow with a kill switch (it needs each run's equity to cut its schedule)."""
        flow, candles = compiled.flow, self.candles
        signals = compiled.signals(candles, shared)
        if flow.risk.kill_switch is not None:
            return simulate(candles, signals, flow.buys, flow.risk, self._settings, self._extremes)
        return _Planned(schedule(candles, signals, flow.buys, flow.risk, self._settings, self._extremes))

    def _trial(self, number: int, params: Params, run: _Planned | Simulation) -> Trial:
        if isinstance(run, _Planned):
            assert run.money is not None  # settled in run()
            equity = equity_curve(self.candles, run.plan, run.money)
            pnl = run.money.proceeds - run.money.spent
        else:
            equity, pnl = run.equity, run.proceeds - run.spent
        capital = self._settings.capital
        metrics = compute_metrics(equity, self.candles.time, pnl, capital, self._last_of_day)
        returns = daily_returns(equity[self._last_of_day])
        metrics.update(added_metrics(returns, float(equity[-1]), capital, self._days, metrics["maxDrawdownPercent"]))
        blocks = None if self._block_starts is None else block_stats(returns, self._block_starts)
        return Trial(number, dict(params), metrics, blocks=blocks)


@dataclass(slots=True)
class _Planned:
    """A trial between its schedule and its money."""

    plan: Schedule
    money: Money | None = None


def block_stats(returns: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``(S, 3)``: count, sum and sum of squares of ``returns`` in the blocks beginning at ``starts``."""
    counts = np.diff(np.r_[starts, len(returns)])
    sums = np.add.reduceat(returns, starts)
    squares = np.add.reduceat(returns * returns, starts)
    return np.column_stack([counts.astype(np.float64), sums, squares])


def _block_starts(count: int, blocks: int) -> np.ndarray | None:
    """Where each of ``blocks`` near-equal contiguous blocks of ``count`` returns starts (the first
    ``count % blocks`` get one more, as ``numpy.array_split``); None when a block would hold fewer
    than two returns (no Sharpe ratio in it)."""
    if count < 2 * blocks:
        return None
    size, extra = divmod(count, blocks)
    return np.cumsum([0] + [size + (1 if i < extra else 0) for i in range(blocks - 1)]).astype(np.int64)


def _flow_error(exc: ValidationFailed) -> str:
    """One line naming what the modified flow broke (the first problem, and how many more)."""
    details = exc.details or []
    if not details:
        return exc.message
    first = details[0]
    where = f"node {first['nodeId']!r} " if first.get("nodeId") else ""
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"the flow refuses these values: {where}{first.get('field')}: {first.get('message')}{more}"


