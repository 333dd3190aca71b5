"""The batch engine equals ``capandex.engine.backtest()`` of each modified flow, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capandex.engine import backtest, validate_flow
from capandex.engine.metrics import daily_equity
from capandex.errors import ValidationFailed
from capandex.research.batch import SharedOutputs, TrialRunner
from capandex.research.objective import added_metrics, daily_returns, range_days
from capandex.research.space import apply_params, parse_space
from tests.capandex.engine.factories import random_walk, sma_cross_flow
from tests.capandex.engine.test_property import flows

COSTS = {"capital": 10_000.0, "fee": 0.001, "slippage": 0.0005}


def reference(document: dict, params: dict, candles) -> dict:
    """What a trial must equal: backtest() of the modified flow, plus the added metrics."""
    result = backtest(apply_params(document, params), candles, **COSTS)
    returns = daily_returns(daily_equity(result.equity, result.time))
    return result.metrics | added_metrics(returns, float(result.equity[-1]), COSTS["capital"],
                                          range_days(result.time), result.metrics["maxDrawdownPercent"])


@st.composite
def flows_and_spaces(draw) -> tuple[dict, dict]:
    """A random flow and a random space over 1-3 of its numeric parameters."""
    document = draw(flows())
    flow = validate_flow(document)
    choices = []
    for node in flow.nodes.values():
        if node.type == "indicator" and "period" in node.params:
            choices.append((f"{node.id}.period", st.integers(2, 12)))
        elif node.type == "risk":
            choices.append((f"{node.id}.percent", st.floats(0.5, 8).map(lambda v: round(v, 2))))
        elif node.type == "action" and node.kind == "buy":
            field = next(f for f in ("sizePercent", "amount", "riskPercent") if f in node.params)
            values = {"sizePercent": st.integers(10, 100), "amount": st.integers(100, 20_000),
                      "riskPercent": st.floats(0.5, 5).map(lambda v: round(v, 2))}[field]
            choices.append((f"{node.id}.{field}", values))
    picked = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3, unique_by=lambda c: c[0])) \
        if choices else []
    space = {name: {"values": draw(st.lists(values, min_size=1, max_size=3, unique=True))} for name, values in picked}
    return document, space


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=flows_and_spaces(), seed=st.integers(0, 10_000), n=st.integers(2, 150))
def test_every_trial_equals_backtest_of_the_modified_flow(case, seed, n):
    document, raw_space = case
    if not raw_space:
        return
    candles = random_walk(n, seed, vol=0.02)
    space = parse_space(raw_space, validate_flow(document))
    batch = list(enumerate(space.combinations()))
    trials = TrialRunner(document, candles, **COSTS).run(batch)
    assert [t.number for t in trials] == [number for number, _ in batch]
    for trial in trials:
        assert trial.error is None
        assert trial.metrics == reference(document, trial.params, candles)


def test_indicators_are_computed_once_per_batch(monkeypatch):
    from capandex.engine import indicators

    calls = []
    real_sma = indicators.sma
    monkeypatch.setattr(indicators, "sma", lambda x, period: calls.append(period) or real_sma(x, period))
    candles = random_walk(300, 3)
    batch = [(i, {"fast.period": f, "slow.period": s}) for i, (f, s) in
             enumerate((f, s) for f in (5, 10) for s in (20, 30, 40))]
    trials = TrialRunner(sma_cross_flow(), candles, **COSTS).run(batch)
    assert sorted(calls) == [5, 10, 20, 30, 40]  # 5 distinct configurations, 6 trials
    for trial in trials:
        assert trial.metrics == reference(sma_cross_flow(), trial.params, candles)


def test_shared_outputs_drop_an_output_after_its_last_use_and_respect_the_budget():
    from collections import Counter

    array = {"value": np.zeros(10)}
    shared = SharedOutputs(Counter({"a": 2, "b": 1}), budget=100)
    assert shared.get("a") is None  # first use: a miss, then offered
    shared["a"] = array
    assert len(shared) == 1 and shared.kept_bytes == 80
    assert shared.get("b") is None
    shared["b"] = {"value": np.zeros(10)}  # no further use: not kept
    assert len(shared) == 1
    assert shared.get("a") is array and len(shared) == 0 and shared.kept_bytes == 0


def test_a_combination_the_flow_refuses_is_reported_not_skipped():
    document = {"nodes": [{"id": "m", "type": "indicator", "data": {"kind": "macd"}},
                          {"id": "c", "type": "condition", "data": {"operator": ">", "value": 0}},
                          {"id": "buy", "type": "action", "data": {"action": "buy"}}],
                "edges": [{"id": "1", "source": "m", "sourceHandle": "macd", "target": "c", "targetHandle": "a"},
                          {"id": "2", "source": "c", "target": "buy"}]}
    space = parse_space({"m.fast": {"values": [5, 30]}}, validate_flow(document))
    trials = TrialRunner(document, random_walk(100, 1), **COSTS).run(list(enumerate(space.combinations())))
    assert trials[0].metrics is not None and trials[0].error is None
    assert trials[1].metrics is None
    assert trials[1].error == "the flow refuses these values: node 'm' data.fast: must be smaller than data.slow"
    with pytest.raises(ValidationFailed):  # as backtest() itself would
        backtest(apply_params(document, trials[1].params), random_walk(100, 1))


def test_block_statistics_partition_the_daily_returns():
    candles = random_walk(24 * 40, 5)  # 40 days of hourly candles: 39 daily returns
    trial = TrialRunner(sma_cross_flow(5, 20), candles, blocks=4, **COSTS).run([(0, {"fast.period": 5})])[0]
    result = backtest(sma_cross_flow(5, 20), candles, **COSTS)
    returns = daily_returns(daily_equity(result.equity, result.time))
    assert trial.blocks[:, 0].tolist() == [10, 10, 10, 9]
    np.testing.assert_allclose(trial.blocks[:, 1].sum(), returns.sum(), rtol=1e-12)
    np.testing.assert_allclose(trial.blocks[:, 2].sum(), (returns ** 2).sum(), rtol=1e-12)
