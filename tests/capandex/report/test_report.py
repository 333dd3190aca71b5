"""The backtest report: what it computes (downsampling, panes, formatting), the PNG, and the HTML
file in a real headless Chromium with the network off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from capandex.engine import backtest
from capandex.engine.candles import Candles
from capandex.report.data import format_metrics, report_data
from tests.capandex.engine.factories import random_walk, sma_cross_flow
from tests.utils.browser import ARTIFACTS, offline_page

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "engine_candles_1h.csv"


def flow_with_oscillators() -> dict:
    flow = sma_cross_flow(10, 30)
    flow["name"] = "SMA cross with RSI and MACD"
    flow["nodes"] += [{"id": "rsi", "type": "indicator", "data": {"kind": "rsi", "period": 14}},
                      {"id": "macd", "type": "indicator", "data": {"kind": "macd"}},
                      {"id": "bands", "type": "indicator", "data": {"kind": "bollinger"}}]
    flow["settings"] = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}
    return flow


def test_long_series_are_bucketed_and_nothing_is_lost() -> None:
    """12,000 candles become at most 5,000 bars: each bar the bucket's open, highest high, lowest
    low, last close and summed volume; equity at the bucket's close, drawdown at its deepest."""
    walk = random_walk(12_000, seed=3)
    candles = Candles.from_any(walk)
    flow = flow_with_oscillators()
    result = backtest(flow, candles)
    data = report_data(result, candles, flow, max_bars=5000)
    assert data.bucket == 3 and len(data.time) == 4000
    assert data.high.max() == candles.high.max() and data.low.min() == candles.low.min()
    assert data.volume.sum() == pytest.approx(candles.volume.sum())
    assert (data.open[1], data.close[0], data.high[0]) == (candles.open[3], candles.close[2], candles.high[:3].max())
    assert data.equity[-1] == result.equity[-1]
    worst = (1 - result.equity / np.maximum.accumulate(result.equity)).max() * 100
    assert data.drawdown.max() == pytest.approx(worst)
    assert data.buy_and_hold[-1] == pytest.approx(10_000 * candles.close[-1] / candles.open[0])
    # price indicators on the price pane, oscillators each in their own
    assert [s.label for s in data.overlays] == ["SMA(10)", "SMA(30)", "BOLLINGER(20, 2) upper",
                                                "BOLLINGER(20, 2) middle", "BOLLINGER(20, 2) lower"]
    assert [(p.title, len(p.lines)) for p in data.panes] == [("RSI(14)", 1), ("MACD(12, 26, 9)", 3)]
    assert len(data.trades) == result.metrics["totalTrades"] > 0
    assert data.subtitle.endswith("12,000 candles")


def test_metrics_are_formatted_for_people() -> None:
    metrics = {"pnl": 1234.5, "pnlPercent": 12.345, "winRate": 0.1972, "maxDrawdown": 450.0,
               "maxDrawdownPercent": 4.2, "sharpeRatio": 1.85, "profitFactor": None, "totalTrades": 48,
               "winningTrades": 30, "losingTrades": 18}
    assert format_metrics(metrics) == [
        ("Profit", "1,234.50"), ("Return", "12.35 %"), ("Win rate", "19.72 %"), ("Max drawdown", "450.00"),
        ("Max drawdown %", "4.20 %"), ("Sharpe ratio", "1.850"), ("Profit factor", "n/a (no losing trade)"),
        ("Trades", "48"), ("Winning trades", "30"), ("Losing trades", "18")]


def test_the_png_shows_the_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from capandex.cli import main

    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(flow_with_oscillators()))
    png = tmp_path / "report.png"
    assert main(["backtest", str(flow), "--candles", str(DATA), "--plot", str(png), "--json"]) == 0
    from matplotlib.image import imread

    image = imread(png)
    assert png.read_bytes()[:4] == b"\x89PNG" and image.shape[0] > image.shape[1] > 1000  # a tall page of panes
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "backtest-report.png").write_bytes(png.read_bytes())


def test_the_html_report_works_offline_in_chromium(tmp_path: Path) -> None:
    """Chromium loads the file with the network off: no console error or warning, no request but
    the file itself, every pane rendered, hover and linked ranges wired; a screenshot is kept."""
    from capandex.cli import main

    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(flow_with_oscillators()))
    report = tmp_path / "report.html"
    assert main(["backtest", str(flow), "--candles", str(DATA), "--plot", str(report), "--json"]) == 0
    text = report.read_text()
    assert "cdn.bokeh.org" not in text and "<script src=" not in text  # BokehJS is inlined
    with offline_page() as (page, problems, requests):
        page.goto(report.as_uri())
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=30_000)
        names = page.evaluate("() => Bokeh.documents[0].roots()[0].children.map(c => c.name)")
        linked = page.evaluate("""() => { const figs = Bokeh.documents[0].roots()[0].children
                                      .filter(c => c.x_range); return new Set(figs.map(f => f.x_range.id)).size }""")
        hovers = page.evaluate("""() => [...Bokeh.documents[0].all_models]
                                       .filter(m => m.type === 'HoverTool').length""")
        rows = page.evaluate("() => Bokeh.documents[0].get_model_by_name('trades').source.data.n.length")
        title = page.inner_text("h2")
        page.wait_for_timeout(300)  # let the canvases paint before the picture
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "backtest-report-html.png"), full_page=True)
    assert problems == []
    assert requests == [report.as_uri()]
    assert names == [None, "price", "volume", "indicator-0", "indicator-1", "equity", "drawdown", "trades"]
    assert linked == 1 and hovers >= 3
    assert title == "SMA cross with RSI and MACD" and rows > 0
