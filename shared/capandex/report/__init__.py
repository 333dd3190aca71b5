"""Backtest reports: an interactive HTML file (Bokeh, works offline) or a PNG (matplotlib).

    from capandex.report import write_report
    write_report(result, candles, flow, "report.html", exchange="binance", symbol="BTC/USDT", timeframe="1h")

:func:`render_report` returns the HTML text (``GET /api/engine/backtest/{id}/report`` serves it).
Both formats draw the same panes from :func:`capandex.report.data.report_data`. Plotting libraries
are imported on first use only (the ``report`` extra installs Bokeh, ``plot`` matplotlib).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capandex.errors import BadRequest

#: what a served report may do, as a ``Content-Security-Policy`` (the API serves it on its own
#: origin, where the session cookie lives): run its inline BokehJS and styles, draw ``data:``/
#: ``blob:`` images and save them — nothing else. ``sandbox`` without ``allow-same-origin`` gives
#: the page an opaque origin, so even a script that found its way into the page could neither read
#: the cookie nor call the API as the user; ``connect-src 'none'`` lets it send nothing anywhere.
CONTENT_SECURITY_POLICY = ("sandbox allow-scripts allow-downloads allow-popups; default-src 'none'; "
                           "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
                           "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")


def render_report(result: Any, candles: Any, flow: Any, *, exchange: str = "", symbol: str = "",
                  timeframe: str = "") -> str:
    """The interactive report of ``result`` (run on ``candles`` with ``flow``) as HTML text; the
    market names, when given, title it."""
    from capandex.report.data import report_data

    try:
        from capandex.report.html import render_html
    except ImportError as exc:  # bokeh is the `report` extra
        raise BadRequest("HTML reports need Bokeh: pip install 'capandex[report]'.") from exc
    return render_html(report_data(result, candles, flow, exchange=exchange, symbol=symbol, timeframe=timeframe))


def write_report(result: Any, candles: Any, flow: Any, path: str | Path, *, exchange: str = "", symbol: str = "",
                 timeframe: str = "") -> None:
    """Write the report to ``path``: ``.html``/``.htm`` interactive, ``.png`` static."""
    from capandex.report.data import report_data

    path = Path(path)
    if path.suffix.lower() == ".png":
        from capandex.report.png import write_png

        write_png(report_data(result, candles, flow, exchange=exchange, symbol=symbol, timeframe=timeframe), path)
    else:
        path.write_text(render_report(result, candles, flow, exchange=exchange, symbol=symbol, timeframe=timeframe),
                        encoding="utf-8")
