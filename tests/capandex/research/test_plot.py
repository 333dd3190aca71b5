"""``capandex optimize --plot FILE.html``: the objective heatmap and the walk-forward equity, in a
real headless Chromium with the network off."""

from __future__ import annotations

import json
from pathlib import Path

from tests.capandex.engine.factories import sma_cross_flow
from tests.utils.browser import ARTIFACTS, offline_page

DATA = Path(__file__).resolve().parents[2] / "data" / "engine_candles_1h.csv"


def test_the_optimisation_page_works_offline_in_chromium(tmp_path: Path, capsys) -> None:
    """Heatmap with a colour bar and a hover per cell, the stitched equity on a time axis, the
    per-window table with in-sample and out-of-sample objectives; no console error, no request."""
    from capandex.cli import main

    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(sma_cross_flow(10, 30, ("stop_loss", 2))))
    page_file = tmp_path / "optimise.html"
    assert main(["optimize", str(flow), "--candles", str(DATA), "--param", "fast.period=3:11:2",
                 "--param", "slow.period=12,20,30", "--param", "sl.percent=1,2", "--walk-forward", "7d:3d",
                 "--json", "--plot", str(page_file)]) == 0
    result = json.loads(capsys.readouterr().out)
    with offline_page() as (page, problems, requests):
        page.goto(page_file.as_uri())
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=30_000)
        names = page.evaluate("() => Bokeh.documents[0].roots()[0].children.map(c => c.name)")
        cells = page.evaluate("() => Bokeh.documents[0].get_model_by_name('objective').renderers[0]"
                              ".data_source.data.value.length")
        axis = page.evaluate("() => Bokeh.documents[0].get_model_by_name('walk-forward').below[0].type")
        windows = page.evaluate("() => Bokeh.documents[0].get_model_by_name('windows').source.data")
        header = page.inner_text("h2")
        page.wait_for_timeout(300)  # let the canvases paint before the picture
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "optimisation-html.png"), full_page=True)
    assert problems == [] and requests == [page_file.as_uri()]
    assert names == [None, "objective", None, "walk-forward", "windows"]
    assert header == "sharpeRatio over fast.period × slow.period"
    assert cells == 5 * 3  # every fast × slow cell, the best over sl.percent
    assert axis == "DatetimeAxis"
    assert windows["window"] == [row["window"] for row in result["walkForward"]["windows"]]
    assert all(text[0].isdigit() or text[0] == "-" for text in windows["fit"])
