"""An optimisation request, validated against its flow: every problem reported at once.

:func:`parse_request` turns the JSON of ``POST /api/engine/optimize`` (less the data source) or
the CLI's options into an :class:`OptimizeSpec`::

    {"space": {...}, "objective": "sharpeRatio", "constraints": {"minTrades": 10},
     "method": "tpe", "trials": 200, "seed": 7,
     "walkForward": {"train": "90d", "test": "30d", "anchored": false},
     "monteCarlo": {"resamples": 1000}}

``space`` is described in :mod:`capandex.research.space`; ``objective`` and ``constraints`` in
:mod:`capandex.research.objective`. ``method`` is ``grid`` (every combination; ``trials`` is then
ignored), ``random`` or ``tpe`` (``trials`` sets, default 100; ``tpe`` at most
:data:`~capandex.research.search.MAX_TPE_TRIALS`). Durations are a whole number and a
unit: ``m`` minutes, ``h`` hours, ``d`` days, ``w`` weeks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from capandex.engine.document import Flow
from capandex.errors import ValidationFailed, field_problem
from capandex.research.montecarlo import MAX_RESAMPLES
from capandex.research.objective import Constraints, Objective, parse_constraints, parse_objective
from capandex.research.search import MAX_TPE_TRIALS, METHODS, Method
from capandex.research.space import MAX_COMBINATIONS, SearchSpace, parse_space, raise_problems

DEFAULT_TRIALS = 100
_UNITS_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")
#: the longest train or test window (ten years)
MAX_WINDOW_MS = 3653 * 86_400_000
_KNOWN = {"space", "objective", "constraints", "method", "trials", "seed", "walkForward", "monteCarlo"}


@dataclass(frozen=True, slots=True)
class WalkForwardSpec:
    """Window lengths in ms; ``anchored`` keeps every train window starting at the first candle."""

    train_ms: int
    test_ms: int
    anchored: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"train": format_duration(self.train_ms), "test": format_duration(self.test_ms),
                "anchored": self.anchored}


@dataclass(frozen=True, slots=True)
class OptimizeSpec:
    """A validated request. ``trials`` is the number of sets for random/tpe (grid: every one);
    ``monte_carlo`` the number of resamples (None: no Monte Carlo)."""

    space: SearchSpace
    objective: Objective
    constraints: Constraints
    method: Method
    trials: int
    seed: int
    walk_forward: WalkForwardSpec | None = None
    monte_carlo: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The request as :func:`parse_request` accepts it (snapshotted for the workers)."""
        out: dict[str, Any] = {"space": self.space.to_json(), "objective": self.objective.metric,
                               "constraints": self.constraints.to_json(), "method": self.method,
                               "trials": self.trials, "seed": self.seed}
        if self.walk_forward is not None:
            out["walkForward"] = self.walk_forward.to_json()
        if self.monte_carlo is not None:
            out["monteCarlo"] = {"resamples": self.monte_carlo}
        return out


def parse_request(raw: Mapping[str, Any], flow: Flow) -> OptimizeSpec:
    """Validate ``raw`` against ``flow``.

    Raises:
        ValidationFailed: every problem at once in ``details`` (``{"field", "message"}``).
    """
    problems: list[dict[str, Any]] = []
    for name in sorted(set(raw) - _KNOWN):
        problems.append(field_problem(name, "unknown field"))
    space = None
    try:
        space = parse_space(raw.get("space"), flow)
    except ValidationFailed as exc:  # merged with the other fields' problems
        problems += exc.details or [field_problem("space", exc.message)]
    objective = parse_objective(raw.get("objective"), problems)
    constraints = parse_constraints(raw.get("constraints"), problems)
    method = raw.get("method", "grid")
    if method not in METHODS:
        problems.append(field_problem("method", f"must be one of {', '.join(METHODS)}"))
        method = "grid"
    trials = _whole(raw.get("trials"), "trials", DEFAULT_TRIALS, 1, MAX_COMBINATIONS, problems)
    if method == "tpe" and trials > MAX_TPE_TRIALS:
        problems.append(field_problem("trials", f"tpe evaluates at most {MAX_TPE_TRIALS:,} sets (its sampler's work "
                                                "grows with the square of the trials); use random or grid for more"))
    seed = _whole(raw.get("seed"), "seed", 0, 0, 2**31 - 1, problems)
    walk_forward = _walk_forward(raw.get("walkForward"), problems)
    monte_carlo = _monte_carlo(raw.get("monteCarlo"), problems)
    raise_problems("optimisation request", problems)
    assert space is not None  # parse_space raised otherwise, and that is a problem above
    return OptimizeSpec(space, objective, constraints, method, trials, seed, walk_forward, monte_carlo)


def parse_duration(text: Any, field: str, problems: list[dict[str, Any]]) -> int | None:
    """``"90d"`` → milliseconds; None (and a problem) when malformed, zero or over ten years."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        problems.append(field_problem(field, 'must be a duration such as "90d", "12h" or "4w"'))
        return None
    value = int(match.group(1)) * _UNITS_MS[match.group(2)]
    if not 0 < value <= MAX_WINDOW_MS:
        problems.append(field_problem(field, "must be longer than zero and at most ten years"))
        return None
    return value


def format_duration(ms: int) -> str:
    """Milliseconds as the largest whole unit: 7776000000 → ``"90d"``."""
    for unit in ("d", "h", "m"):
        if ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{math.ceil(ms / 60_000)}m"


def _walk_forward(raw: Any, problems: list[dict[str, Any]]) -> WalkForwardSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append(field_problem("walkForward", 'must be {"train": "90d", "test": "30d", "anchored": false}'))
        return None
    for name in sorted(set(raw) - {"train", "test", "anchored"}):
        problems.append(field_problem(f"walkForward.{name}", "unknown field"))
    train = parse_duration(raw.get("train"), "walkForward.train", problems)
    test = parse_duration(raw.get("test"), "walkForward.test", problems)
    anchored = raw.get("anchored", False)
    if not isinstance(anchored, bool):
        problems.append(field_problem("walkForward.anchored", "must be true or false"))
    if train is None or test is None or not isinstance(anchored, bool):
        return None
    return WalkForwardSpec(train, test, anchored)


def _monte_carlo(raw: Any, problems: list[dict[str, Any]]) -> int | None:
    if raw is None:
        return None
    resamples = raw.get("resamples", 1000) if isinstance(raw, Mapping) else None
    if not isinstance(raw, Mapping) or set(raw) - {"resamples"}:
        problems.append(field_problem("monteCarlo", 'must be {"resamples": N}'))
        return None
    return _whole(resamples, "monteCarlo.resamples", 1000, 1, MAX_RESAMPLES, problems)


def _whole(value: Any, field: str, default: int, low: int, high: int, problems: list[dict[str, Any]]) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(field_problem(field, f"must be a whole number from {low:,} to {high:,}"))
        return default
    return value
