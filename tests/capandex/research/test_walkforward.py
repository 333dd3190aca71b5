"""Walk-forward: windows as DESIGN §8 defines them, and no test candle ever reaches an optimisation."""

from __future__ import annotations

import numpy as np
import pytest

from capandex.engine import Candles, backtest
from capandex.errors import ValidationFailed
from capandex.research import optimize
from capandex.research.batch import TrialRunner
from capandex.research.request import WalkForwardSpec
from capandex.research.space import apply_params
from capandex.research.walkforward import WindowRun, efficiency, run_out_of_sample, stitch, windows_between
from tests.capandex.engine.factories import START_MS, random_walk, sma_cross_flow

DAY = 86_400_000
FLOW = sma_cross_flow(5, 20, ("stop_loss", 2))
REQUEST = {"space": {"fast.period": {"values": [3, 5, 8]}, "slow.period": {"values": [12, 20, 30]}},
           "walkForward": {"train": "10d", "test": "4d"}}


def test_rolling_and_anchored_windows_cover_everything_after_the_first_train_window():
    rolling = windows_between(0, 30 * DAY, WalkForwardSpec(10 * DAY, 7 * DAY))
    assert [(w.train_start, w.train_end, w.test_start, w.test_end) for w in rolling] == [
        (0, 10 * DAY, 10 * DAY, 17 * DAY), (7 * DAY, 17 * DAY, 17 * DAY, 24 * DAY),
        (14 * DAY, 24 * DAY, 24 * DAY, 30 * DAY)]  # the last test window is cut at the end
    anchored = windows_between(0, 30 * DAY, WalkForwardSpec(10 * DAY, 7 * DAY, anchored=True))
    assert [w.train_start for w in anchored] == [0, 0, 0]
    assert [w.train_end for w in anchored] == [w.train_end for w in rolling]


def test_a_range_too_short_for_the_windows_is_a_422_naming_walk_forward():
    with pytest.raises(ValidationFailed) as caught:
        optimize(FLOW, random_walk(24 * 12, 1), REQUEST)  # 12 days < 10d + 4d
    assert caught.value.status == 422
    assert caught.value.details == [{"field": "walkForward", "message": "the candles span 12d, less than "
                                                                         "train + test (10d + 4d)"}]


def test_no_test_candle_reaches_the_optimisation_of_its_window(monkeypatch):
    seen: list[tuple[int, int]] = []
    real_init = TrialRunner.__init__

    def spy(self, document, candles, **kwargs):
        real_init(self, document, candles, **kwargs)
        seen.append((int(self.candles.time[0]), int(self.candles.time[-1])))

    monkeypatch.setattr(TrialRunner, "__init__", spy)
    candles = random_walk(24 * 30, 4)
    result = optimize(FLOW, candles, REQUEST)
    windows = result["walkForward"]["windows"]
    assert len(windows) == 5 and len(seen) == 1 + len(windows)  # the whole range, then each train window
    for (first, last), window in zip(seen[1:], windows, strict=True):
        test_start = np.datetime64(window["testStart"][:-1]).astype("datetime64[ms]").astype(np.int64)
        assert last < test_start and first >= test_start - 10 * DAY


def test_changing_the_future_changes_no_earlier_choice_or_out_of_sample_result():
    candles = random_walk(24 * 30, 4)
    base = optimize(FLOW, candles, REQUEST)["walkForward"]["windows"]
    cut = START_MS + 20 * DAY  # from the third test window's middle (18d-22d) on, a different market
    other = random_walk(24 * 30, 99)
    late = candles.time >= cut
    mixed = Candles.from_arrays(candles.time, *(np.where(late, getattr(other, f) * 3, getattr(candles, f))
                                                for f in ("open", "high", "low", "close", "volume")))
    changed = optimize(FLOW, mixed, REQUEST)["walkForward"]["windows"]
    assert changed[:2] == base[:2]  # windows whose test ends before the cut: identical in every number
    assert changed[2]["params"] == base[2]["params"]  # chosen on train candles before the cut
    assert changed[2]["outOfSample"] != base[2]["outOfSample"]


def test_out_of_sample_runs_warm_up_on_earlier_candles_only():
    candles = random_walk(24 * 30, 6)
    window = windows_between(int(candles.time[0]), int(candles.time[-1]) + 3_600_000,
                             WalkForwardSpec(10 * DAY, 4 * DAY))[1]
    params = {"fast.period": 5, "slow.period": 20}
    costs = {"capital": 10_000.0, "fee": 0.001, "slippage": 0.001}
    run = run_out_of_sample(FLOW, params, candles, window, **costs)
    stop = int(np.searchsorted(candles.time, window.test_end))
    start = int(np.searchsorted(candles.time, window.test_start))
    # nothing after the window matters, and SMA(20) needs only 20 earlier bars to agree exactly
    assert run_out_of_sample(FLOW, params, candles.slice(0, stop), window, **costs).metrics == run.metrics
    assert run_out_of_sample(FLOW, params, candles.slice(start - 40, stop), window, **costs).metrics == run.metrics
    # it trades from the window's first bar: an SMA cross already warm at the window's start
    assert len(run.equity) == stop - start and run.metrics["totalTrades"] > 0
    cold = backtest(apply_params(FLOW, params), candles.slice(start, stop), **costs)
    assert cold.metrics != run.metrics  # a cold start would have waited 20 bars


def test_stitching_chains_the_windows_returns_and_efficiency_skips_losing_train_windows():
    def window_run(final: float, start: int) -> WindowRun:
        equity = np.array([10_000.0, final])
        return WindowRun({}, equity, np.array([start, start + DAY]), np.array([final - 10_000.0]))

    stitched = stitch([window_run(11_000.0, 0), window_run(9_900.0, 2 * DAY)], 10_000.0)
    assert stitched.equity.tolist() == pytest.approx([10_000.0, 11_000.0, 11_000.0, 10_890.0])
    assert stitched.metrics["totalTrades"] == 2 and stitched.metrics["pnl"] == pytest.approx(890.0)
    assert efficiency([(20.0, 10.0), (-5.0, 3.0), (10.0, 10.0)]) == {"efficiency": 0.75, "windowsUsed": 2,
                                                                     "windowsExcluded": 1}
