"""The propose_flow_change patch: parsing, application, validation by the engine."""

from __future__ import annotations

import pytest

from capandex.chat.patch import OP_NAMES, TOOL, apply_patch, parse_patch, propose
from capandex.errors import ValidationFailed
from tests.utils.chat import sma_flow


def _patch(*ops, summary="change"):
    return parse_patch({"summary": summary, "ops": list(ops)})


def test_tool_schema_lists_every_op_the_parser_knows():
    assert TOOL["input_schema"]["properties"]["ops"]["items"]["properties"]["op"]["enum"] == list(OP_NAMES)
    for name in OP_NAMES:
        with pytest.raises(ValidationFailed):  # each op exists (fails on its missing fields, not on the tag)
            parse_patch({"summary": "s", "ops": [{"op": name, "bogus": 1}]})


def test_ops_apply_in_order_and_keep_ui_state():
    flow = sma_flow()
    result = apply_patch(flow, _patch(
        {"op": "update_node", "id": "fast", "data": {"period": 12, "source": "hl2"}},
        {"op": "update_node", "id": "buy", "data": {"sizePercent": None}},
        {"op": "remove_node", "id": "sl"},
        {"op": "add_node", "node": {"id": "tp", "type": "risk", "data": {"kind": "take_profit", "percent": 5}}},
        {"op": "remove_edge", "source": "down", "target": "sell"},
        {"op": "add_edge", "edge": {"source": "down", "target": "sell"}},
        {"op": "update_settings", "settings": {"timeframe": "4h", "slippage": None}},
    ))
    nodes = {n["id"]: n for n in result["nodes"]}
    assert nodes["fast"]["data"] == {"kind": "sma", "period": 12, "source": "hl2"}
    assert nodes["fast"]["position"] == {"x": 0, "y": 0}
    assert nodes["buy"]["data"] == {"action": "buy"}
    assert "sl" not in nodes and nodes["tp"]["data"]["kind"] == "take_profit"
    assert {"id": "e-down-sell", "source": "down", "target": "sell"} in result["edges"]
    assert "e6" not in {e["id"] for e in result["edges"]}
    assert result["settings"]["timeframe"] == "4h" and "slippage" not in result["settings"]
    assert flow == sma_flow()  # the input is not modified


def test_removing_a_node_removes_its_edges():
    result = apply_patch(sma_flow(), _patch({"op": "remove_node", "id": "slow"}))
    assert all("slow" not in (e["source"], e["target"]) for e in result["edges"])


def test_ops_naming_missing_things_are_reported_together():
    with pytest.raises(ValidationFailed) as caught:
        apply_patch(sma_flow(), _patch({"op": "update_node", "id": "nope", "data": {}},
                                       {"op": "remove_edge", "id": "e99"},
                                       {"op": "add_node", "node": {"id": "fast", "type": "price", "data": {}}}))
    assert [d["field"] for d in caught.value.details] == ["ops.0.id", "ops.1", "ops.2.node.id"]


def test_malformed_input_names_the_field():
    with pytest.raises(ValidationFailed) as caught:
        parse_patch({"summary": "", "ops": [{"op": "add_edge", "edge": {"source": "a"}}]})
    fields = {d["field"] for d in caught.value.details}
    assert "summary" in fields and any(f.startswith("ops.0.add_edge.edge.target") for f in fields)


def test_propose_returns_the_validated_flow():
    payload = propose(sma_flow(), {"summary": "Slower fast SMA",
                                   "ops": [{"op": "update_node", "id": "fast", "data": {"period": 15}}]})
    assert payload["summary"] == "Slower fast SMA"
    assert payload["ops"] == [{"op": "update_node", "id": "fast", "data": {"period": 15}}]
    assert next(n for n in payload["flow"]["nodes"] if n["id"] == "fast")["data"]["period"] == 15


def test_propose_refuses_a_flow_the_engine_rejects():
    with pytest.raises(ValidationFailed) as caught:
        propose(sma_flow(), {"summary": "Drop buying", "ops": [{"op": "remove_node", "id": "buy"}]})
    assert caught.value.details  # the engine's problems, for the model to fix


def test_propose_on_no_flow_starts_from_an_empty_one():
    with pytest.raises(ValidationFailed):
        propose(None, {"summary": "Just a price", "ops": [
            {"op": "add_node", "node": {"id": "p", "type": "price", "data": {"field": "close"}}}]})
