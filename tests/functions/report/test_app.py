"""``GET /api/engine/backtest/{id}/report`` through the gateway: a completed backtest's report as
one HTML page, rebuilt from the stored candles without the exchange; 409 before completion, 404
for anyone else's."""

from __future__ import annotations

from sqlalchemy import update

from capandex.db.schema import backtests
from capandex.db.session import transaction
from tests.functions.engine.test_backtest_routes import body, user  # noqa: F401 (the fixture)
from tests.utils.binance_server import BinanceServer


def test_a_completed_backtest_has_its_report(user, binance: BinanceServer, api) -> None:  # noqa: F811
    result = user.post("/api/engine/backtest", json=body(user.flow_id)).json()
    pages = binance.count("/api/v3/klines")
    report = user.get(f"/api/engine/backtest/{result['backtestId']}/report")
    assert report.status_code == 200, report.text
    assert report.headers["content-type"].startswith("text/html")
    page = report.text
    assert "<title>SMA cross — backtest report</title>" in page and "binance BTC/USDT 1h" in page
    assert "Bokeh" in page and "cdn.bokeh.org" not in page
    assert f"{result['metrics']['totalTrades']:,}" in page
    assert binance.count("/api/v3/klines") == pages  # the candles came from the store

    stranger = api.as_user()
    missing = stranger.get(f"/api/engine/backtest/{result['backtestId']}/report")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    with transaction() as conn:
        conn.execute(update(backtests).where(backtests.c.id == result["backtestId"]).values(status="running"))
    running = user.get(f"/api/engine/backtest/{result['backtestId']}/report")
    assert (running.status_code, running.json()["error"]["code"]) == (409, "conflict")


def test_a_report_is_drawn_once_then_served_as_stored(user, binance: BinanceServer, monkeypatch) -> None:  # noqa: F811
    """Drawing costs up to ~3 s of CPU and every GET drew it again; now the page is kept (gzip)
    beside the result and a second GET draws nothing."""
    import capandex.report
    from capandex.backtests.report import report_key
    from capandex.marketdata import get_store

    backtest_id = user.post("/api/engine/backtest", json=body(user.flow_id)).json()["backtestId"]
    first = user.get(f"/api/engine/backtest/{backtest_id}/report")
    assert first.status_code == 200, first.text
    assert get_store().get(report_key(user.id, backtest_id)) is not None

    def no_drawing(*args, **kwargs):
        raise AssertionError("the stored page should have been served")

    monkeypatch.setattr(capandex.report, "render_report", no_drawing)
    again = user.get(f"/api/engine/backtest/{backtest_id}/report")
    assert again.status_code == 200 and again.text == first.text


def test_drawing_reports_is_rate_limited_per_user(user, api, binance: BinanceServer, configure) -> None:  # noqa: F811
    configure(CAPANDEX_REPORT_RATE_BURST="1", CAPANDEX_REPORT_RATE_PER_HOUR="1")
    ids = [user.post("/api/engine/backtest", json=body(user.flow_id)).json()["backtestId"] for _ in range(2)]
    assert user.get(f"/api/engine/backtest/{ids[0]}/report").status_code == 200
    refused = user.get(f"/api/engine/backtest/{ids[1]}/report")
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert user.get(f"/api/engine/backtest/{ids[0]}/report").status_code == 200  # a stored page costs no drawing
    stranger = api.as_user()  # buckets are per user
    assert stranger.get(f"/api/engine/backtest/{ids[1]}/report").status_code == 404


def test_the_served_report_runs_sandboxed_on_no_origin(user, binance: BinanceServer) -> None:  # noqa: F811
    """The API serves the page on its own origin, where the session cookie lives: its
    Content-Security-Policy sandboxes it (an opaque origin: no cookie, no same-origin call to the
    API, no network at all) and BokehJS still draws every pane in Chromium."""
    from capandex.report import CONTENT_SECURITY_POLICY
    from tests.utils.browser import served_page

    backtest_id = user.post("/api/engine/backtest", json=body(user.flow_id)).json()["backtestId"]
    report = user.get(f"/api/engine/backtest/{backtest_id}/report")
    assert report.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert report.headers["x-content-type-options"] == "nosniff"
    origin = "https://api.capandex.test"
    with served_page(f"{origin}/api/engine/backtest/{backtest_id}/report", report.content, dict(report.headers),
                     cookies=[{"name": "sb-api-auth-token", "value": "session", "url": origin}]) as (page, problems):
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=30_000)
        names = page.evaluate("() => Bokeh.documents[0].roots()[0].children.map(c => c.name)")
        seen = page.evaluate("""async () => ({
            origin: window.origin,
            cookie: (() => { try { return document.cookie } catch (e) { return e.name } })(),
            api: await fetch('/api/flows', {credentials: 'include'}).then(r => r.status, e => e.name)})""")
    assert names == [None, "price", "volume", "equity", "drawdown", "trades"]
    assert seen == {"origin": "null", "cookie": "SecurityError", "api": "TypeError"}
    assert [p for p in problems if "Content Security Policy" not in p] == []  # only our probe was refused
