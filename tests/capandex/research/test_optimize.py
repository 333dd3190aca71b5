"""``optimize()`` and ``capandex optimize`` end to end on small data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capandex.cli import main
from capandex.engine import backtest
from capandex.research import Cancelled, optimize
from capandex.research.objective import OBJECTIVES
from capandex.research.space import apply_params
from tests.capandex.engine.factories import random_walk, sma_cross_flow

DATA = Path(__file__).resolve().parents[2] / "data" / "engine_candles_1h.csv"
FLOW = sma_cross_flow(5, 20, ("stop_loss", 2))
GRID = {"space": {"fast.period": {"min": 3, "max": 9, "step": 2}, "slow.period": {"values": [12, 20, 30]}},
        "constraints": {"minTrades": 3}}
COSTS = {"capital": 10_000.0, "fee": 0.001, "slippage": 0.001}


@pytest.fixture(scope="module")
def candles():
    return random_walk(24 * 45, 11)


def test_the_winner_is_the_best_feasible_trial_by_brute_force(candles):
    result = optimize(FLOW, candles, GRID | {"objective": "calmarRatio"}, all_trials=True, **COSTS)
    assert result["evaluated"] == 12 and result["refused"] == 0
    brute = {}
    for fast in (3, 5, 7, 9):
        for slow in (12, 20, 30):
            metrics = backtest(apply_params(FLOW, {"fast.period": fast, "slow.period": slow}), candles,
                               **COSTS).metrics
            brute[(fast, slow)] = metrics
    for trial in result["trials"]:  # the table holds backtest()'s numbers
        seed_metrics = {k: v for k, v in trial["metrics"].items() if k not in ("sortinoRatio", "calmarRatio")}
        assert seed_metrics == brute[(trial["params"]["fast.period"], trial["params"]["slow.period"])]
    feasible = [t for t in result["trials"] if t["metrics"]["totalTrades"] >= 3]
    best = max(feasible, key=lambda t: (t["metrics"]["calmarRatio"], -t["number"]))
    assert result["best"] == {"params": best["params"], "metrics": best["metrics"]}
    ranked = [t["metrics"]["calmarRatio"] for t in result["top"] if t["metrics"]["totalTrades"] >= 3]
    assert ranked == sorted(ranked, reverse=True)


def test_minimised_objectives_pick_the_smallest(candles):
    assert not OBJECTIVES["maxDrawdownPercent"]
    result = optimize(FLOW, candles, GRID | {"objective": "maxDrawdownPercent"}, all_trials=True, **COSTS)
    feasible = [t["metrics"]["maxDrawdownPercent"] for t in result["trials"] if t["metrics"]["totalTrades"] >= 3]
    assert result["best"]["metrics"]["maxDrawdownPercent"] == min(feasible)


def test_no_feasible_trial_means_no_winner_and_says_why(candles):
    result = optimize(FLOW, candles, GRID | {"constraints": {"minTrades": 10_000}}, **COSTS)
    assert result["best"] is None and result["feasible"] == 0
    assert result["note"] == "no trial satisfies the constraints with a defined objective"


def test_robustness_and_overfitting_are_reported_for_the_winner(candles):
    result = optimize(FLOW, candles, GRID | {"monteCarlo": {"resamples": 200}, "seed": 4}, **COSTS)
    stress = result["robustness"]["costStress"]
    assert (stress["fee"], stress["slippage"]) == (0.002, 0.002)
    doubled = backtest(apply_params(FLOW, result["best"]["params"]), candles, capital=10_000.0, fee=0.002,
                       slippage=0.002).metrics
    assert {k: stress["metrics"][k] for k in doubled} == doubled
    assert result["robustness"]["monteCarlo"]["resamples"] == 200
    assert result["overfitting"]["pbo"]["combinations"] == 12870 and 0 <= result["overfitting"]["pbo"]["pbo"] <= 1
    assert 0 <= result["overfitting"]["deflatedSharpe"]["dsr"] <= 1
    json.dumps(result, allow_nan=False)  # never NaN or infinite


def test_progress_counts_up_to_the_total_and_cancel_stops_spending(candles):
    calls: list[tuple[int, int]] = []
    optimize(FLOW, candles, GRID, progress=lambda done, total: calls.append((done, total)), **COSTS)
    assert calls[0] == (0, 12) and calls[-1] == (12, 12)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    polled: list[int] = []
    with pytest.raises(Cancelled):
        optimize(FLOW, candles, GRID, cancel=lambda: polled.append(1) or len(polled) > 1, batch=5,
                 progress=lambda done, total: calls.append((done, -1)), **COSTS)
    assert len(polled) == 2 and calls[-1] == (5, -1)  # one batch of 5 ran, the second never started


def test_a_process_pool_gives_the_same_result_as_one_process(candles):
    request = GRID | {"method": "tpe", "trials": 10, "seed": 2, "walkForward": {"train": "20d", "test": "10d"}}
    one = optimize(FLOW, candles, request, all_trials=True, **COSTS)
    assert optimize(FLOW, candles, request, workers=2, all_trials=True, **COSTS) == one


def test_cli_prints_every_trial_and_the_tests_as_json(tmp_path, capsys):
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(FLOW))
    code = main(["optimize", str(flow), "--candles", str(DATA), "--param", "fast.period=3:9:2",
                 "--param", "slow.period=12,20", "--where", "fast.period < slow.period", "--walk-forward", "7d:3d",
                 "--monte-carlo", "100", "--min-trades", "2", "--json", "--plot", str(tmp_path / "out.html")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"trials", "best", "evaluated", "refused", "costStress", "overfitting", "walkForward",
                        "monteCarlo"}
    assert len(out["trials"]) == 8 and set(out["trials"][0]) == {"number", "params", "metrics"}
    assert set(out["best"]) == {"params", "metrics"} and "sharpeRatio" in out["best"]["metrics"]
    page = (tmp_path / "out.html").read_text()  # the Bokeh page, BokehJS inlined (test_plot opens it in Chromium)
    assert "Bokeh" in page and "<script src=" not in page


def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(FLOW))
    assert main(["optimize", str(flow), "--candles", str(DATA), "--param", "fast.period=a:b"]) == 2
    assert "values must be numbers" in capsys.readouterr().err
    assert main(["optimize", str(flow), "--candles", str(DATA), "--param", "ghost.period=1:3",
                 "--objective", "luck"]) == 2
    err = capsys.readouterr().err
    assert "space.ghost.period no node with id 'ghost'" in err and "objective must be one of" in err
