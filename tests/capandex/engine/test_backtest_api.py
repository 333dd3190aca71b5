"""The library API and the CLI: golden metrics on a shipped CSV, bad input, JSON without NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from capandex.cli import main
from capandex.engine import backtest, equity_curve_for_api
from capandex.engine.csvio import read_candles_csv
from capandex.engine.result import downsample_indices
from capandex.errors import BadRequest, ValidationFailed
from tests.capandex.engine.factories import random_walk, sma_cross_flow

DATA = Path(__file__).parents[2] / "data" / "engine_candles_1h.csv"
FLOW = sma_cross_flow(10, 30, ("stop_loss", 2), ("take_profit", 6))


def test_golden_metrics_on_the_shipped_csv():
    result = backtest(FLOW, read_candles_csv(DATA))
    expected = {"pnl": -1221.9549067093285, "pnlPercent": -12.219549067093286,
                "winRate": 0.1111111111111111, "maxDrawdown": 1221.9549067093285,
                "maxDrawdownPercent": 12.219549067093283, "sharpeRatio": -6.298683194121031,
                "profitFactor": 0.30132398441954555}
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, rel=1e-8), key
    assert (result.metrics["totalTrades"], result.metrics["winningTrades"], result.metrics["losingTrades"]) == (
        9, 1, 8)
    assert [t["exitReason"] for t in result.trades].count("stop_loss") == 8
    assert len(result.equity) == len(result.time) == 500


def test_dataframe_and_mapping_inputs_agree():
    pd = pytest.importorskip("pandas")
    c = random_walk(300, 5)
    frame = pd.DataFrame({"Open": c.open, "High": c.high, "Low": c.low, "Close": c.close, "Volume": c.volume},
                         index=pd.to_datetime(c.time, unit="ms"))
    mapping = {"time": c.time.astype("datetime64[ms]"), "open": c.open, "high": c.high, "low": c.low,
               "close": c.close, "volume": c.volume}
    assert backtest(FLOW, frame).trades == backtest(FLOW, mapping).trades


@pytest.mark.parametrize(("change", "needle"), [
    (lambda d: d["close"].__setitem__(3, np.nan), "row 3"),
    (lambda d: d["open"].__setitem__(4, -1.0), "row 4"),
    (lambda d: d["time"].__setitem__(5, d["time"][4]), "row 5"),
])
def test_bad_candles_name_the_row(change, needle):
    c = random_walk(20, 1)
    data = {"time": c.time.copy(), "open": c.open.copy(), "high": c.high.copy(), "low": c.low.copy(),
            "close": c.close.copy(), "volume": c.volume.copy()}
    change(data)
    with pytest.raises(ValidationFailed, match=needle):
        backtest(FLOW, data)


def test_empty_candles_and_too_short_data():
    c = random_walk(20, 1)
    with pytest.raises(ValidationFailed, match="no candles"):
        backtest(FLOW, c.slice(0, 0))
    result = backtest(FLOW, c)  # 20 candles < SMA(30) warm-up: a documented, tested outcome
    assert result.trades == [] and result.metrics["pnl"] == 0.0
    assert result.metrics["profitFactor"] is None and result.metrics["sharpeRatio"] == 0.0
    assert "no trade could happen" in result.warnings[0]
    json.loads(result.to_json())


def test_json_has_no_nan_and_api_curve_is_downsampled_keeping_the_trough():
    c = random_walk(5000, 11)
    result = backtest(FLOW, c)
    text = result.to_json()
    assert "NaN" not in text and "Infinity" not in text
    curve = equity_curve_for_api(result)
    assert len(curve) <= 2000
    trough = int(np.argmax(1 - result.equity / np.maximum.accumulate(result.equity)))
    stamps = {p["timestamp"] for p in curve}
    iso = c.iso_times()
    assert {iso[0], iso[-1], iso[trough]} <= stamps
    assert curve[0]["timestamp"].endswith("Z")
    assert all(math.isfinite(p["equity"]) for p in curve)


def test_downsampled_curve_keeps_the_money_drawdown_and_every_short_dip():
    """The deepest drawdown in money (``maxDrawdown``) can be another trough than the deepest in
    percent, and a dip shorter than the spacing of evenly spaced points vanished between two of
    them: a chart beside a 60,000 drawdown figure showed at most 500."""
    equity = np.full(260_000, 1_000.0)
    equity[10:] -= 500                       # 50 %: the deepest in percent, 500 in money
    equity[100_000:] += 200_000              # a rich account ...
    equity[150_001] -= 60_000                # ... loses 60,000 (~30 %) for one point
    equity[200_000:200_003] -= 7_000         # a three-point dip elsewhere
    kept = downsample_indices(equity, 2000)
    assert len(kept) == 2000 and np.all(np.diff(kept) > 0)
    shown = equity[kept]
    assert shown.min() == 500.0 and 150_001 in kept  # the money trough
    assert {0, 10, len(equity) - 1} <= set(kept.tolist())  # the ends, the percent trough (its peak is 0)
    assert shown[(kept >= 200_000) & (kept < 200_003)].size >= 1         # the short dip is drawn
    drawn = np.maximum.accumulate(shown) - shown
    assert drawn.max() == 60_000.0  # the drawdown the metric reports is visible in the curve


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_cli_json_output(tmp_path, capsys):
    flow = write(tmp_path, "flow.json", json.dumps(FLOW))
    assert main(["backtest", flow, "--candles", str(DATA), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"metrics", "trades", "equityCurve"}
    assert len(out["equityCurve"]) == 500 and out["metrics"]["totalTrades"] == 9


def test_cli_plots(tmp_path, capsys):
    flow = write(tmp_path, "flow.json", json.dumps(FLOW))
    html = tmp_path / "chart.html"
    assert main(["backtest", flow, "--candles", str(DATA), "--plot", str(html)]) == 0
    assert capsys.readouterr().err == f"report: {html.resolve()}\n"  # where it went, stdout kept for results
    text = html.read_text()  # the Bokeh report, BokehJS inlined (tests/capandex/report opens it in Chromium)
    assert "Bokeh" in text and "<script src=" not in text and '<link rel="stylesheet" href="http' not in text
    png = tmp_path / "chart.png"
    pytest.importorskip("matplotlib")
    assert main(["backtest", flow, "--candles", str(DATA), "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = "2024-01-01T00:00:00Z,10,11,9,10,5\n"


@pytest.mark.parametrize(("body", "needle"), [
    ("time,open,high,low,volume\n2024-01-01,1,1,1,1\n", "line 1: missing column(s) close"),
    (HEADER + GOOD + "yesterday,10,11,9,10,5\n", "line 3: time 'yesterday'"),
    (HEADER + GOOD + "2023-12-31T00:00:00Z,10,11,9,10,5\n", "line 3: time is earlier"),
    (HEADER + GOOD + GOOD, "line 3: time duplicates"),
    (HEADER + GOOD + "2024-01-01T01:00:00Z,10,11,9,nan,5\n", "line 3: close is NaN"),
    (HEADER + GOOD + "2024-01-01T01:00:00Z,0,11,9,10,5\n", "line 3: open is not positive"),
])
def test_cli_bad_csv_names_the_line(tmp_path, capsys, body, needle):
    flow = write(tmp_path, "flow.json", json.dumps(FLOW))
    candles = write(tmp_path, "c.csv", body)
    assert main(["backtest", flow, "--candles", candles]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err


def test_csv_accepts_epoch_ms_and_unnamed_time_column(tmp_path):
    path = write(tmp_path, "c.csv", ",Open,HIGH,low,close,volume\n1704067200000,10,11,9,10,5\n"
                 "1704070800000,10,12,9,11,5\n")
    candles = read_candles_csv(path)
    assert candles.time.tolist() == [1704067200000, 1704070800000]


def test_cli_invalid_flow_and_missing_marketdata(tmp_path, capsys):
    flow = write(tmp_path, "flow.json", json.dumps({"nodes": [{"id": "x", "type": "nope"}]}))
    assert main(["backtest", flow, "--candles", str(DATA)]) == 2
    assert "invalid flow" in capsys.readouterr().err
    good = write(tmp_path, "good.json", json.dumps(FLOW))
    with pytest.raises(BadRequest, match="needs --symbol"):
        import argparse

        from capandex.cli.common import load_candles

        load_candles(argparse.Namespace(candles=None, exchange="binance", symbol=None, timeframe=None,
                                        start=None, end=None))
    assert good


def test_the_first_trades_listed_are_the_same_trades() -> None:
    """``to_dict(max_trades=)`` lists the first trades exactly as the whole list has them."""
    from tests.capandex.engine.factories import price_rule_flow, random_walk

    result = backtest(price_rule_flow(0.0, 1e9), random_walk(101, seed=3))
    assert len(result.trades) == 50
    listed = result.to_dict(max_trades=7)
    assert listed["trades"] == result.trades[:7]
    assert listed["warnings"] == ["50 trades: the first 7 are listed (the metrics count all)."]
    assert result.to_dict(max_trades=50)["trades"] == result.trades and "warnings" not in result.to_dict(max_trades=50)


@pytest.mark.parametrize("max_points", [1, 2, 5, 7, 8, 9])
def test_a_curve_downsampled_to_a_few_points_keeps_its_ends(max_points) -> None:
    kept = downsample_indices(np.linspace(1.0, 2.0, 50), max_points)
    assert kept[0] == 0 and kept[-1] == 49 and len(kept) == max(max_points, 2) and np.all(np.diff(kept) > 0)
