"""How parameter sets are chosen: ``grid``, ``random`` or ``tpe``.

Every search answers :meth:`Search.ask` with the next parameter sets to evaluate (an empty list
when it is done) and learns from :meth:`Search.tell`. A search is a pure function of its seed and
of what it has been told, and is rebuilt from that alone (:func:`make_search` with ``told``), so
the in-process pool and the Step Functions rounds, which keep no sampler between Lambda calls,
choose the same trials.

* ``grid`` — every combination of the space satisfying its relations, in grid order.
* ``random`` — ``trials`` distinct combinations drawn uniformly without replacement (seeded).
* ``tpe`` — Optuna's Tree-structured Parzen Estimator (Bergstra et al. 2011), asked in rounds of
  :func:`tpe_round_size` with the constant-liar strategy so the sets of a round differ; the
  sampler of round r is seeded with ``seed + r``. Each parameter is a choice among its candidate
  indices (an ordered integer for ranges, a categorical for explicit values), so TPE never leaves
  the space. A suggestion that breaks a relation or repeats an evaluated set is told its known
  score (or the worst one) and asked again, without spending a trial. When the space holds no more
  valid combinations than ``trials``, TPE evaluates them all (as grid).

Optuna is imported only when a ``tpe`` search asks.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from capandex.research.space import Number, Params, SearchSpace

Method = Literal["grid", "random", "tpe"]
METHODS: tuple[Method, ...] = ("grid", "random", "tpe")
#: what TPE is told for a set it must avoid (relation broken, objective undefined, flow refused)
WORST_SCORE = -1e300
#: the most sets a ``tpe`` search evaluates: each round rebuilds the sampler from every set told so
#: far and each ask weighs them all, so its work grows with the square of the trials (89,000 trials
#: over four days of candles — nothing by the engine's cost model — were hours of sampling)
MAX_TPE_TRIALS = 2_000
#: CPU seconds per (ask × set told before its round) of Optuna's TPE, measured with
#: ``benchmarks/tpe_cost.py`` (1.8-3.3e-5 on this machine class, whatever the parameters) and rounded up
TPE_SECONDS_PER_ASK_AND_TOLD = 4e-5


@dataclass(frozen=True, slots=True)
class Told:
    """One evaluated set as a search sees it: its trial number, parameters and score (larger is
    better; None when the trial failed, its objective is undefined or it breaks the constraints)."""

    number: int
    params: Params
    score: float | None


class Search(Protocol):
    """Chooses parameter sets; see the module docstring."""

    @property
    def total(self) -> int:
        """How many sets it will evaluate in all."""

    def ask(self, limit: int) -> list[Params]: ...

    def tell(self, told: Sequence[Told]) -> None: ...


def make_search(method: Method, space: SearchSpace, *, trials: int, seed: int,
                told: Sequence[Told] = (), rounds: int = 0, issued: int | None = None) -> Search:
    """The search for ``method``, resumed after ``told`` (sets already evaluated), ``rounds`` TPE
    rounds already asked and ``issued`` sets already handed out (default: as many as told)."""
    issued = len(told) if issued is None else issued
    valid = _valid(space)
    if method == "grid":
        return _Sequence(valid, issued)
    if method == "random":
        order = np.random.default_rng(seed).permutation(len(valid))[:trials]
        return _Sequence([valid[i] for i in order.tolist()], issued)
    if len(valid) <= trials:
        return _Sequence(valid, issued)
    return _Tpe(space, trials, seed, list(told), rounds, pending=issued - len(told))


def sampler_seconds(search: Search) -> float:
    """CPU seconds the search itself spends choosing its sets (not evaluating them): TPE's rounds
    of ``round size`` asks, each weighing every set told before its round; 0 for grid and random."""
    if not isinstance(search, _Tpe):
        return 0.0
    size = tpe_round_size(search.total)
    rounds = math.ceil(search.total / size)
    told_before_asks = size * size * rounds * (rounds - 1) / 2  # Σ over rounds r of size asks × r·size told
    return told_before_asks * TPE_SECONDS_PER_ASK_AND_TOLD


def tpe_round_size(trials: int) -> int:
    """Sets per TPE round: a tenth of the trials, 8 to 64 (fewer rounds mean fewer Step Functions
    iterations; smaller rounds mean TPE learns more often)."""
    return max(8, min(64, math.ceil(trials / 10)))


def _valid(space: SearchSpace) -> list[Params]:
    return list(space.combinations())


@dataclass
class _Sequence:
    """A fixed list of sets (grid order, or a seeded permutation), handed out in order."""

    sets: list[Params]
    position: int = 0

    @property
    def total(self) -> int:
        return len(self.sets)

    def ask(self, limit: int) -> list[Params]:
        chosen = self.sets[self.position:self.position + limit]
        self.position += len(chosen)
        return chosen

    def tell(self, told: Sequence[Told]) -> None:
        """Grid and random do not learn."""


@dataclass
class _Tpe:
    """Optuna TPE over candidate indices, rebuilt from ``told`` for each round."""

    space: SearchSpace
    total: int
    seed: int
    told: list[Told] = field(default_factory=list)
    rounds: int = 0
    pending: int = 0

    def ask(self, limit: int) -> list[Params]:
        remaining = self.total - len(self.told) - self.pending
        if remaining <= 0 or self.pending:  # one round at a time: tell before asking again
            return []
        wanted = min(limit, remaining, tpe_round_size(self.total))
        chosen = self._round(wanted)
        self.rounds += 1
        self.pending = len(chosen)
        return chosen

    def tell(self, told: Sequence[Told]) -> None:
        self.told.extend(told)
        self.pending = max(0, self.pending - len(told))

    def _round(self, wanted: int) -> list[Params]:
        optuna = _optuna()
        distributions = {p.name: (optuna.distributions.IntDistribution(0, len(p.values) - 1) if p.ordered
                                  else optuna.distributions.CategoricalDistribution(list(range(len(p.values)))))
                         for p in self.space.parameters}
        with warnings.catch_warnings():  # constant_liar is "experimental" in some Optuna releases
            warnings.simplefilter("ignore")
            sampler = optuna.samplers.TPESampler(seed=self.seed + self.rounds, constant_liar=True,
                                                 n_startup_trials=min(10, max(1, self.total // 5)))
        study = optuna.create_study(direction="maximize", sampler=sampler)
        known: dict[tuple[Number, ...], float] = {}
        for item in sorted(self.told, key=lambda told: told.number):  # completion order varies
            key = tuple(item.params[name] for name in self.space.names)
            known[key] = WORST_SCORE if item.score is None else item.score
            study.add_trial(optuna.trial.create_trial(params=self._indices(item.params), distributions=distributions,
                                                      value=known[key]))
        chosen: list[Params] = []
        for _ in range(20 * wanted):  # a bounded number of asks per round
            if len(chosen) == wanted:
                break
            trial = study.ask(distributions)
            params = {p.name: p.values[trial.params[p.name]] for p in self.space.parameters}
            key = tuple(params.values())
            if key in known or not self.space.allows(params):
                study.tell(trial, known.get(key, WORST_SCORE))
                continue
            known[key] = WORST_SCORE  # pending: the liar keeps the round's other asks elsewhere
            chosen.append(params)
        return chosen

    def _indices(self, params: Params) -> dict[str, int]:
        return {p.name: p.values.index(params[p.name]) for p in self.space.parameters}


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def batches(items: Sequence[tuple[int, Params]], size: int) -> Iterator[list[tuple[int, Params]]]:
    """``items`` in consecutive lists of at most ``size``."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
