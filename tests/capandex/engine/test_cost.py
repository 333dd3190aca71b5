"""The work budget: nodes × candles, checked before a run, and a memory model that holds."""

from __future__ import annotations

import tracemalloc

import pytest

from capandex.engine import backtest, compile_flow, cost
from capandex.errors import ValidationFailed
from tests.capandex.engine.factories import random_walk

CANDLES = random_walk(20_000, seed=4)

PARAMS = {"macd": {"fast": 12, "slow": 26, "signal": 9}, "bollinger": {"period": 20, "stddev": 2},
          "stochastic": {"kPeriod": 14, "kSmooth": 3, "dPeriod": 3}, "obv": {}}
OUTPUT = {"macd": "macd", "bollinger": "upper", "stochastic": "k"}


def indicator_flow(*indicators: tuple[str, dict]) -> dict:
    """Every indicator compared with 0 and OR-ed into one buy."""
    nodes = [{"id": "buy", "type": "action", "data": {"action": "buy"}}]
    edges = []
    for i, (kind, params) in enumerate(indicators):
        nodes += [{"id": f"i{i}", "type": "indicator", "data": {"kind": kind, **params}},
                  {"id": f"c{i}", "type": "condition", "data": {"operator": ">", "value": 0}}]
        edges += [{"id": f"a{i}", "source": f"i{i}", "sourceHandle": OUTPUT.get(kind, "value"), "target": f"c{i}",
                   "targetHandle": "a"}, {"id": f"b{i}", "source": f"c{i}", "target": "buy"}]
    return {"nodes": nodes, "edges": edges}


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", [k for k in cost.NODE_COSTS if k not in ("price", "constant", "condition", "logic")])
@pytest.mark.parametrize("period", [20, 5_000])
def test_the_memory_model_covers_every_indicator(kind, period):
    """What a whole backtest of the indicator allocates stays under the estimate (measured, not
    timed: tracemalloc counts bytes, whatever else the machine does)."""
    params = PARAMS.get(kind, {"period": period})
    compiled = compile_flow(indicator_flow((kind, params)))
    estimate = cost.estimate(compiled, len(CANDLES))
    assert peak_bytes(lambda: backtest(compiled, CANDLES)) <= estimate.bytes


def test_many_nodes_cost_many_times_one():
    one = cost.estimate(compile_flow(indicator_flow(("bollinger", {"period": 20}))), 10_000)
    fifty = cost.estimate(compile_flow(indicator_flow(*[("bollinger", {"period": 20 + i}) for i in range(50)])), 10_000)
    assert fifty.nodes == 100 and one.nodes == 2  # indicators and conditions; actions compute nothing
    pair = cost.NODE_COSTS["bollinger"], cost.NODE_COSTS["condition"]  # what each extra indicator adds
    assert fifty.bytes - one.bytes == 49 * sum(c.arrays for c in pair) * 8 * 10_000
    assert fifty.seconds - one.seconds == pytest.approx(49 * sum(c.ns_per_candle for c in pair) * 1e-9 * 10_000)
    assert cost.estimate(compile_flow(indicator_flow(("sma", {"period": 20}))), 20_000).bytes == \
        2 * cost.estimate(compile_flow(indicator_flow(("sma", {"period": 20}))), 10_000).bytes


def test_500_nodes_over_a_year_of_minutes_is_refused_naming_range_and_nodes():
    compiled = compile_flow(indicator_flow(*[("bollinger", {"period": 20 + i}) for i in range(250)]))
    with pytest.raises(ValidationFailed) as info:
        cost.check_budget(cost.estimate(compiled, 366 * 1440))
    assert [d["field"] for d in info.value.details] == ["endDate", "nodes"]
    assert "500 computing nodes over 527,040 candles" in info.value.message
    assert "the limit is 512 MiB" in info.value.message


def test_the_issues_bollinger_fits():
    work = cost.estimate(compile_flow(indicator_flow(("bollinger", {"period": 20_000, "stddev": 2}))), 65_000)
    cost.check_budget(work)
    assert work.bytes < 20 * 2**20 and work.seconds < 0.05
