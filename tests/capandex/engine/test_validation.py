"""Flow validation reports every problem at once, with node id, field and reason."""

from __future__ import annotations

import pytest

from capandex.engine import validate_flow
from capandex.errors import ValidationFailed
from tests.capandex.engine.factories import sma_cross_flow


def problems(flow: dict) -> list[dict]:
    with pytest.raises(ValidationFailed) as info:
        validate_flow(flow)
    assert info.value.status == 422
    return info.value.details


def test_valid_example_flow_passes():
    flow = validate_flow(sma_cross_flow())
    assert flow.order.index("fast") < flow.order.index("up") < flow.order.index("buy")


def test_every_problem_is_reported_together():
    flow = {
        "nodes": [
            {"id": "a", "type": "indicator", "data": {"kind": "sma"}},                 # missing period
            {"id": "b", "type": "indicator", "data": {"kind": "supertrend"}},          # unknown kind
            {"id": "c", "type": "gizmo", "data": {}},                                  # unknown type
            {"id": "d", "type": "indicator", "data": {"kind": "rsi", "period": 1}},    # out of range
            {"id": "x", "type": "condition", "data": {"operator": ">"}},
            {"id": "y", "type": "logic", "data": {"operator": "and"}},
            {"id": "z", "type": "logic", "data": {"operator": "or"}},
            {"id": "s", "type": "action", "data": {"action": "sell"}},
        ],
        "edges": [
            {"id": "e1", "source": "a", "target": "x", "targetHandle": "a"},
            {"id": "e2", "source": "a", "target": "y"},                        # numeric into boolean
            {"id": "e3", "source": "y", "target": "z"},                        # cycle y <-> z
            {"id": "e4", "source": "z", "target": "y"},
            {"id": "e5", "source": "ghost", "target": "s"},                    # dangling
            {"id": "e6", "source": "d", "target": "x", "targetHandle": "q"},   # bad handle
        ],
    }
    details = problems(flow)
    seen = {(p["nodeId"], p["field"]) for p in details}
    assert ("a", "data.period") in seen
    assert ("b", "data.kind") in seen
    assert ("c", "type") in seen
    assert ("d", "data.period") in seen
    assert ("y", "inputs.in") in seen
    assert {("y", "inputs"), ("z", "inputs")} <= seen
    assert ("ghost", "edge e5.source") in seen
    assert ("x", "edge e6.targetHandle") in seen
    assert ("x", "inputs.b") in seen
    assert (None, "nodes") in seen  # no buy action
    assert all(set(p) >= {"nodeId", "field", "message"} for p in details)


def test_boolean_into_numeric_and_risk_percent_without_stop():
    flow = sma_cross_flow(riskPercent=1)
    flow["edges"].append({"id": "bad", "source": "up", "target": "down", "targetHandle": "b"})
    details = problems(flow)
    fields = {(p["nodeId"], p["field"]) for p in details}
    assert ("buy", "data.riskPercent") in fields
    assert ("down", "inputs.b") in fields


def test_multi_output_indicator_needs_a_named_handle_and_settings_are_checked():
    flow = sma_cross_flow()
    flow["nodes"].append({"id": "m", "type": "indicator", "data": {"kind": "macd"}})
    flow["edges"][1] = {"id": "e2", "source": "m", "target": "up", "targetHandle": "b"}
    flow["settings"] = {"feeRate": -1}
    fields = {(p["nodeId"], p["field"]) for p in problems(flow)}
    assert ("m", "edge e2.sourceHandle") in fields
    assert (None, "settings.feeRate") in fields


@pytest.mark.parametrize("value, why", [
    (10**400, "must be in [2, 100000]"), (float("nan"), "must be a finite number"),
    (float("inf"), "must be a finite number"), (2.5, "must be a whole number"), ("10", "must be a number"),
])
def test_parameters_of_any_size_are_problems_not_crashes(value, why):
    flow = sma_cross_flow()
    flow["nodes"][0]["data"]["period"] = value
    assert {"nodeId": "fast", "field": "data.period", "message": why} in problems(flow)


def test_a_constant_no_float_can_hold_is_a_problem():
    flow = sma_cross_flow()
    flow["nodes"].append({"id": "k", "type": "constant", "data": {"value": -(10**400)}})
    flow["nodes"].append({"id": "r", "type": "risk", "data": {"kind": "stop_loss", "percent": 10**400}})
    found = problems(flow)
    assert {"nodeId": "k", "field": "data.value", "message": "must be a finite number"} in found
    assert {"nodeId": "r", "field": "data.percent", "message": "must be in (0, 100]"} in found


def test_an_edge_end_that_is_not_a_string_is_a_problem_not_a_crash():
    """A list or object as an edge's source/target names no node (it used to reach dict.get and
    raise TypeError: unhashable type, a 500)."""
    flow = sma_cross_flow()
    flow["edges"] = [*flow["edges"], {"id": "odd", "source": ["fast"], "target": {"id": "up"}}]
    fields = {p["field"] for p in problems(flow)}
    assert {"edge odd.source", "edge odd.target"} <= fields


def test_a_misspelt_field_is_a_problem_naming_the_field_meant():
    """A field that is almost a parameter would silently leave the default in force (a buy of
    100 % instead of 10 %); other unknown fields (the editor's label) are the editor's business."""
    flow = sma_cross_flow()
    data = {node["id"]: node["data"] for node in flow["nodes"]}
    data["buy"]["sizePercnt"] = 10
    data["slow"]["length"] = 50                      # TradingView's name for the period
    data["fast"]["label"] = "Fast SMA"               # not a typo: kept, ignored
    flow["settings"] = {"initalCapital": 500, "fee": 0.002, "dashboardColour": "blue"}
    found = {(p["nodeId"], p["field"]): p["message"] for p in problems(flow)}
    assert found == {
        ("buy", "data.sizePercnt"): "not a field of this node; did you mean sizePercent?",
        ("slow", "data.length"): "not a field of this node; did you mean period?",
        (None, "settings.initalCapital"): "not a setting; did you mean initialCapital?",
        (None, "settings.fee"): "not a setting; did you mean feeRate?",
    }


def test_a_field_of_another_kind_is_not_mistaken_for_a_typo():
    flow = sma_cross_flow()
    flow["nodes"].append({"id": "sto", "type": "indicator", "data": {"kind": "stochastic", "kperiod": 5}})
    flow["nodes"].append({"id": "bb", "type": "indicator", "data": {"kind": "bollinger", "period": 20, "stddev": 2}})
    found = [(p["nodeId"], p["field"], p["message"]) for p in problems(flow)]
    assert found == [("sto", "data.kperiod", "not a field of this node; did you mean kPeriod?")]
