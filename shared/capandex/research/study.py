"""A study: the searches of one optimisation and the trials they evaluated.

An optimisation searches one *scope* per candle range: the whole range, plus, with walk-forward,
each train window (:mod:`capandex.research.walkforward`). :meth:`Study.ask` hands out
:class:`Batch` es (a scope and numbered parameter sets) — the unit a worker evaluates, in the
local process pool or as one item of the Step Functions Distributed Map — and
:meth:`Study.tell` records what came back. Batches stream: a study never holds more than the
batches in flight, whatever the size of the space.

Trials are kept per scope in a :class:`TrialTable`: columns of numbers (parameters, the metrics
of :data:`~capandex.research.objective.METRICS`, the block statistics of the whole-range scope),
not dicts, so 100,000 trials cost ~15 MB. A table serialises to ``.npz`` bytes, and a study is
rebuilt from its tables and a small JSON state (:meth:`Study.state`), which is how the Step
Functions tasks carry it from one Lambda invocation to the next.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from capandex.research.batch import Trial
from capandex.research.objective import METRICS, Constraints, Objective
from capandex.research.request import OptimizeSpec
from capandex.research.search import Search, Told, make_search
from capandex.research.space import Number, Params

_INTEGER_METRICS = {"totalTrades", "winningTrades", "losingTrades"}


@dataclass(frozen=True, slots=True)
class Scope:
    """A candle range searched on its own: ``[start_ms, end_ms)``, None for an open end."""

    name: str
    start_ms: int | None = None
    end_ms: int | None = None
    blocks: int | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Parameter sets of one scope, numbered in the order the scope's search chose them."""

    scope: int
    items: list[tuple[int, Params]]

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "items": [[number, params] for number, params in self.items]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        return cls(int(data["scope"]), [(int(number), dict(params)) for number, params in data["items"]])


class TrialTable:
    """The evaluated trials of one scope, as columns (see the module docstring)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.numbers = np.zeros(0, dtype=np.int64)
        self.params = np.zeros((0, len(self.names)))
        self.metrics = np.zeros((0, len(METRICS)))
        self.blocks: np.ndarray | None = None
        self.errors: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.numbers)

    def add(self, trials: Sequence[Trial]) -> None:
        if not trials:
            return
        before = len(self)
        self.numbers = np.r_[self.numbers, [t.number for t in trials]]
        self.params = np.vstack([self.params, [[t.params[name] for name in self.names] for t in trials]])
        rows = [[np.nan if t.metrics is None or t.metrics[m] is None else t.metrics[m] for m in METRICS]
                for t in trials]
        self.metrics = np.vstack([self.metrics, rows])
        self.errors.update({t.number: t.error for t in trials if t.error is not None})
        shape = self.blocks.shape[1:] if self.blocks is not None else next(
            (t.blocks.shape for t in trials if t.blocks is not None), None)
        if shape is not None:  # a refused trial has no blocks: NaN rows keep the table aligned
            old = self.blocks if self.blocks is not None else np.full((before, *shape), np.nan)
            new = np.stack([np.full(shape, np.nan) if t.blocks is None else t.blocks for t in trials])
            self.blocks = np.concatenate([old, new])

    def trial(self, row: int, kinds: Sequence[bool]) -> dict[str, Any]:
        """Row ``row`` as ``{"number", "params", "metrics"}`` (or ``"error"``); ``kinds`` says which
        parameters are whole numbers."""
        number = int(self.numbers[row])
        params: dict[str, Number] = {name: int(v) if whole else float(v) for name, v, whole
                                     in zip(self.names, self.params[row].tolist(), kinds, strict=True)}
        if number in self.errors:
            return {"number": number, "params": params, "error": self.errors[number]}
        metrics: dict[str, Any] = {}
        for name, value in zip(METRICS, self.metrics[row].tolist(), strict=True):
            metrics[name] = None if np.isnan(value) else int(value) if name in _INTEGER_METRICS else value
        return {"number": number, "params": params, "metrics": metrics}

    def ranking(self, objective: Objective, constraints: Constraints) -> np.ndarray:
        """Rows from best to worst: feasible before infeasible, then a defined objective before an
        undefined one, then by the objective, then the earlier trial."""
        column = self.metrics[:, METRICS.index(objective.metric)]
        score = column if objective.maximize else -column
        defined = ~np.isnan(score)
        feasible = self.feasible(constraints)
        return np.lexsort((self.numbers, -np.where(defined, score, 0.0), ~defined, ~feasible))

    def feasible(self, constraints: Constraints) -> np.ndarray:
        """Rows whose trial ran and satisfies ``constraints``."""
        trades = self.metrics[:, METRICS.index("totalTrades")]
        drawdown = self.metrics[:, METRICS.index("maxDrawdownPercent")]
        ok = ~np.isnan(trades) & (trades >= constraints.min_trades)
        if constraints.max_drawdown_percent is not None:
            ok &= drawdown <= constraints.max_drawdown_percent
        return ok

    def best(self, objective: Objective, constraints: Constraints) -> int | None:
        """The winning row: feasible with a defined objective; None when no trial qualifies."""
        if not len(self):
            return None
        row = int(self.ranking(objective, constraints)[0])
        defined = not np.isnan(self.metrics[row, METRICS.index(objective.metric)])
        return row if self.feasible(constraints)[row] and defined else None

    def told(self, objective: Objective, constraints: Constraints) -> list[Told]:
        """What a search was told, in trial order (the search's score: None unless feasible)."""
        feasible = self.feasible(constraints)
        column = self.metrics[:, METRICS.index(objective.metric)]
        out = []
        for row in np.argsort(self.numbers, kind="stable").tolist():
            value = float(column[row])
            score = None if not feasible[row] or np.isnan(value) else value if objective.maximize else -value
            params = dict(zip(self.names, self.params[row].tolist(), strict=True))
            out.append(Told(int(self.numbers[row]), params, score))
        return out

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {"numbers": self.numbers, "params": self.params, "metrics": self.metrics,
                                  "names": np.array(self.names, dtype=str), "errors": np.array(json.dumps(self.errors))}
        if self.blocks is not None:
            arrays["blocks"] = self.blocks
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrialTable:
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            table = cls(saved["names"].tolist())
            table.numbers, table.params, table.metrics = saved["numbers"], saved["params"], saved["metrics"]
            table.blocks = saved["blocks"] if "blocks" in saved.files else None
            table.errors = {int(k): v for k, v in json.loads(str(saved["errors"])).items()}
        return table


class Study:
    """The searches of every scope and their tables; see the module docstring."""

    def __init__(self, spec: OptimizeSpec, scopes: Sequence[Scope], tables: Sequence[TrialTable] | None = None,
                 state: dict[str, Any] | None = None) -> None:
        self.spec, self.scopes = spec, list(scopes)
        self.tables = list(tables) if tables is not None else [TrialTable(spec.space.names) for _ in self.scopes]
        state = state or {}
        self.issued: list[int] = state.get("issued", [0] * len(self.scopes))
        self.done: list[bool] = state.get("done", [False] * len(self.scopes))
        self._next = int(state.get("next", 0))
        rounds = state.get("rounds", [0] * len(self.scopes))
        self.searches: list[Search] = [
            make_search(spec.method, spec.space, trials=spec.trials, seed=spec.seed + index,
                        told=table.told(spec.objective, spec.constraints), rounds=rounds[index],
                        issued=self.issued[index])
            for index, table in enumerate(self.tables)]

    @property
    def finished(self) -> bool:
        return all(self.done)

    @property
    def total(self) -> int:
        """Trials the study will evaluate in all (an upper bound for tpe, which may run out of
        new combinations)."""
        return sum(search.total for search in self.searches)

    @property
    def evaluated(self) -> int:
        return sum(len(table) for table in self.tables)

    def ask(self, size: int) -> Batch | None:
        """The next batch of at most ``size`` sets, taking scopes in turn; None when every scope is
        done or waiting for the results of its current round."""
        for offset in range(len(self.scopes)):
            index = (self._next + offset) % len(self.scopes)
            if self.done[index]:
                continue
            params = self.searches[index].ask(size)
            if params:
                self._next = index + 1
                first = self.issued[index]
                self.issued[index] += len(params)
                return Batch(index, list(zip(range(first, first + len(params)), params, strict=True)))
            if self.issued[index] == len(self.tables[index]):  # nothing pending and nothing new
                self.done[index] = True
        return None

    def tell(self, batch: Batch, trials: Sequence[Trial]) -> None:
        """Record a batch's trials (in any order of completion)."""
        self.tables[batch.scope].add(trials)
        spec = self.spec
        self.searches[batch.scope].tell([
            Told(t.number, t.params, None if t.metrics is None or not spec.constraints.satisfied(t.metrics)
                 else spec.objective.score(t.metrics)) for t in trials])

    def state(self) -> dict[str, Any]:
        """What, with the tables, rebuilds this study (JSON)."""
        rounds = [getattr(search, "rounds", 0) for search in self.searches]
        return {"issued": self.issued, "done": self.done, "next": self._next, "rounds": rounds}
