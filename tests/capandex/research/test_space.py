"""The search space and the request: every problem reported at once, values exactly as asked."""

from __future__ import annotations

import pytest

from capandex.engine import validate_flow
from capandex.errors import ValidationFailed
from capandex.research.request import parse_request
from capandex.research.space import MAX_COMBINATIONS, apply_params, parse_space, split_name
from tests.capandex.engine.factories import sma_cross_flow

FLOW = sma_cross_flow(10, 30, ("stop_loss", 2))
VALIDATED = validate_flow(FLOW)


def problems(raw: dict, parse=parse_space) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        parse(raw, VALIDATED)
    assert caught.value.status == 422
    return {d["field"]: d["message"] for d in caught.value.details}


def test_every_problem_of_a_space_is_reported_at_once():
    found = problems({
        "ghost.period": {"values": [1]},                       # unknown node
        "fast.length": {"values": [5]},                        # unknown field
        "up.operator": {"values": [1]},                        # a condition's only numeric field is value
        "slow.period": {"min": 50, "max": 20, "step": 5},      # a range with no values
        "sl.percent": {"values": [0, 2, 150]},                 # values the node refuses
        "where": ["fast.period < nothing.period"],             # a relation naming an unknown parameter
    })
    assert found == {
        "space.ghost.period": "no node with id 'ghost'",
        "space.fast.length": "is not a numeric parameter of a sma indicator (numeric: period)",
        "space.up.operator": "a condition's only numeric field is value",
        "space.slow.period": "has no values: min 50 is above max 20",
        "space.sl.percent": "2 value(s) the node refuses (0, 150): must be in (0, 100]",
        "space.where[0]": "names 'nothing.period', which is not a parameter of the space",
    }


def test_a_space_over_the_combination_cap_is_refused():
    found = problems({"fast.period": {"min": 2, "max": 1001}, "slow.period": {"min": 2, "max": 1001}})
    assert found == {"space": f"has 1,000,000 combinations; at most {MAX_COMBINATIONS:,} (narrow a range or raise "
                              "a step)"}


def test_ranges_are_inclusive_and_rounded_and_relations_filter():
    space = parse_space({"fast.period": {"min": 5, "max": 15, "step": 5}, "sl.percent": {"min": 0.1, "max": 0.3,
                                                                                         "step": 0.1},
                         "slow.period": {"values": [10, 20]}, "where": ["fast.period < slow.period"]}, VALIDATED)
    assert space.parameters[0].values == (5, 10, 15)
    assert space.parameters[1].values == (0.1, 0.2, 0.3)  # not 0.30000000000000004
    combos = list(space.combinations())
    assert space.size == 18 and len(combos) == 12  # (5, 10), (5, 20), (10, 20), (15, 20) per stop value
    assert all(c["fast.period"] < c["slow.period"] for c in combos)
    assert combos[0] == {"fast.period": 5, "sl.percent": 0.1, "slow.period": 10}


def test_apply_params_copies_and_splits_at_the_last_dot():
    document = {"nodes": [{"id": "a.b", "type": "indicator", "data": {"kind": "sma", "period": 3}}], "edges": []}
    changed = apply_params(document, {"a.b.period": 7})
    assert changed["nodes"][0]["data"]["period"] == 7
    assert document["nodes"][0]["data"]["period"] == 3
    assert split_name("a.b.period") == ("a.b", "period")


def test_the_request_reports_every_field_at_once():
    found = problems({"space": {"fast.period": {"values": []}}, "objective": "luck", "method": "annealing",
                      "trials": 0, "seed": -1, "constraints": {"minTrades": -2, "maxDrawdownPercent": 0},
                      "walkForward": {"train": "90x", "test": "30d"}, "monteCarlo": {"resamples": 10**9},
                      "colour": "red"}, parse=parse_request)
    assert set(found) == {"space.fast.period.values", "objective", "method", "trials", "seed",
                          "constraints.minTrades", "constraints.maxDrawdownPercent", "walkForward.train",
                          "monteCarlo.resamples", "colour"}


def test_a_valid_request_round_trips_through_json():
    spec = parse_request({"space": {"fast.period": {"min": 5, "max": 20, "step": 5}}, "method": "tpe", "trials": 40,
                          "seed": 3, "objective": "maxDrawdownPercent", "constraints": {"minTrades": 2},
                          "walkForward": {"train": "90d", "test": "30d", "anchored": True},
                          "monteCarlo": {"resamples": 500}}, VALIDATED)
    assert not spec.objective.maximize
    assert spec.walk_forward.train_ms == 90 * 86_400_000 and spec.walk_forward.anchored
    assert parse_request(spec.to_json(), VALIDATED) == spec
