"""The interactive report: one self-contained HTML file drawn by Bokeh (as backtesting.py's plots).

Panes, top to bottom, sharing one time axis (pan, zoom and the crosshair move them together):
candlesticks with the flow's price indicators and every trade (entry ▲ and exit ▼ joined by a
line, green when it made money, red when it lost; hovering shows the trade), volume, one pane per
oscillator (RSI, MACD, stochastic, ATR, …), equity against buy-and-hold, and drawdown; above them
the title (flow, market, range) and the formatted metrics; below, the trade list. BokehJS is
inlined (``bokeh.resources.INLINE``), so the file opens offline. Bokeh is imported here only, on
first use: no function imports it at cold start.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np

from capandex.report.data import ReportData

if TYPE_CHECKING:
    from bokeh.plotting import figure as Figure

GREEN, RED, BLUE, GREY = "#26a69a", "#ef5350", "#1f77b4", "#888888"
PALETTE = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
WIDTH = 1200


def render_html(data: ReportData) -> str:
    """The report as one HTML document (BokehJS inlined)."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models.widgets.markups import Div  # bokeh.models re-exports it by star import, which mypy cannot see
    from bokeh.resources import INLINE

    price = _price_pane(data)
    panes = [price, _volume_pane(data, price)]
    panes += [_oscillator_pane(data, pane, price, i) for i, pane in enumerate(data.panes)]
    panes += [_equity_pane(data, price), _drawdown_pane(data, price)]
    for pane in panes[:-1]:
        pane.xaxis.visible = False
    layout = column(Div(text=_header(data), width=WIDTH), *panes, _trade_table(data),
                    sizing_mode="stretch_width")
    return file_html(layout, resources=INLINE, title=f"{data.title} — backtest report")


def _header(data: ReportData) -> str:
    cells = "".join(f"<div class='m'><span>{html.escape(label)}</span><b>{html.escape(value)}</b></div>"
                    for label, value in data.metrics)
    note = (f"<p class='n'>Each bar is {data.bucket} candles (downsampled to stay responsive).</p>"
            if data.bucket > 1 else "")
    warnings = "".join(f"<p class='n'>⚠ {html.escape(w)}</p>" for w in data.warnings)
    return (f"<style>.m{{display:inline-block;margin:4px 18px 4px 0}}.m span{{display:block;color:#666;"
            f"font-size:12px}}.m b{{font-size:16px}}.n{{color:#666;margin:2px 0}}</style>"
            f"<h2 style='margin:0'>{html.escape(data.title)}</h2><p class='n'>{html.escape(data.subtitle)}</p>"
            f"<div>{cells}</div>{note}{warnings}")


def _figure(name: str, height: int, x_range: Any = None, y_label: str = "") -> Figure:
    from bokeh.models import CrosshairTool, DatetimeTickFormatter, NumeralTickFormatter
    from bokeh.plotting import figure

    kwargs = {"x_range": x_range} if x_range is not None else {}
    fig = figure(name=name, height=height, width=WIDTH, x_axis_type="datetime", sizing_mode="stretch_width",
                 tools="xpan,xwheel_zoom,box_zoom,reset,save", active_drag="xpan", active_scroll="xwheel_zoom",
                 **kwargs)
    fig.add_tools(CrosshairTool(dimensions="height"))
    fig.yaxis.axis_label = y_label
    if name in ("volume", "equity"):  # large numbers; prices and oscillators keep Bokeh's precision
        fig.yaxis.formatter = NumeralTickFormatter(format="0,0.[00]")
    fig.xaxis.formatter = DatetimeTickFormatter(days="%Y-%m-%d", hours="%m-%d %H:%M", minutes="%H:%M")
    fig.min_border_left = 70
    return fig


def _price_pane(data: ReportData) -> Figure:
    from bokeh.models import ColumnDataSource, HoverTool

    fig = _figure("price", 380, y_label="price")
    up = data.close >= data.open
    source = ColumnDataSource({"t": data.time, "open": data.open, "high": data.high, "low": data.low,
                               "close": data.close, "color": np.where(up, GREEN, RED)})
    fig.segment("t", "high", "t", "low", color="color", source=source)
    bars = fig.vbar("t", data.width_ms, "open", "close", fill_color="color", line_color="color", source=source)
    fig.add_tools(HoverTool(renderers=[bars], formatters={"@t": "datetime"}, tooltips=[
        ("time", "@t{%F %H:%M}"), ("open", "@open{0,0.[0000]}"), ("high", "@high{0,0.[0000]}"),
        ("low", "@low{0,0.[0000]}"), ("close", "@close{0,0.[0000]}")]))
    for i, line in enumerate(data.overlays):
        fig.line(data.time, line.values, color=PALETTE[i % len(PALETTE)], line_width=1.3, legend_label=line.label)
    _trades(fig, data)
    if data.overlays or data.trades:
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
    return fig


def _trades(fig: Figure, data: ReportData) -> None:
    from bokeh.models import ColumnDataSource, HoverTool

    if not data.trades:
        return
    t = data.trades
    color = [GREEN if x["pnl"] > 0 else RED for x in t]
    common = {"n": [x["number"] for x in t], "entry": [x["entry"] for x in t], "exit": [x["exit"] for x in t],
              "pnl": [x["pnlText"] for x in t], "pct": [x["pnlPercentText"] for x in t],
              "reason": [x["reason"] for x in t], "color": color,
              "entry_price": [x["entryPrice"] for x in t], "exit_price": [x["exitPrice"] for x in t],
              "entry_ms": [x["entryMs"] for x in t], "exit_ms": [x["exitMs"] for x in t]}
    source = ColumnDataSource(common)
    fig.segment("entry_ms", "entry_price", "exit_ms", "exit_price", color="color", line_width=2, line_dash="dotted",
                source=source)
    entries = fig.scatter("entry_ms", "entry_price", marker="triangle", size=9, color="color", line_color="black",
                          line_width=0.5, source=source, legend_label="trades (green: profit, red: loss)")
    exits = fig.scatter("exit_ms", "exit_price", marker="inverted_triangle", size=9, color="color",
                        line_color="black", line_width=0.5, source=source)
    fig.add_tools(HoverTool(renderers=[entries, exits], tooltips=[
        ("trade", "#@n"), ("entry", "@entry at @entry_price{0,0.[0000]}"),
        ("exit", "@exit at @exit_price{0,0.[0000]} (@reason)"), ("pnl", "@pnl (@pct)")]))


def _volume_pane(data: ReportData, price: Figure) -> Figure:
    fig = _figure("volume", 110, price.x_range, "volume")
    fig.vbar(data.time, data.width_ms, data.volume, color=np.where(data.close >= data.open, GREEN, RED), alpha=0.5)
    return fig


def _oscillator_pane(data: ReportData, pane: Any, price: Figure, index: int) -> Figure:
    fig = _figure(f"indicator-{index}", 140, price.x_range, pane.title)
    for i, line in enumerate(pane.lines):
        if line.label.endswith("histogram"):
            fig.vbar(data.time, data.width_ms, np.nan_to_num(line.values), color=GREY, alpha=0.5,
                     legend_label=line.label)
        else:
            fig.line(data.time, line.values, color=PALETTE[i % len(PALETTE)], legend_label=line.label)
    fig.legend.location = "top_left"
    return fig


def _equity_pane(data: ReportData, price: Figure) -> Figure:
    from bokeh.models import HoverTool

    fig = _figure("equity", 200, price.x_range, "equity")
    equity = fig.line(data.time, data.equity, color=BLUE, line_width=1.6, legend_label="strategy")
    fig.line(data.time, data.buy_and_hold, color=GREY, line_dash="dashed", legend_label="buy and hold")
    fig.add_tools(HoverTool(renderers=[equity], mode="vline", formatters={"@x": "datetime"},
                            tooltips=[("time", "@x{%F %H:%M}"), ("equity", "@y{0,0.00}")]))
    fig.legend.location = "top_left"
    return fig


def _drawdown_pane(data: ReportData, price: Figure) -> Figure:
    fig = _figure("drawdown", 130, price.x_range, "drawdown %")
    fig.varea(data.time, -data.drawdown, 0, color=RED, alpha=0.4)
    return fig


def _trade_table(data: ReportData) -> Any:
    from bokeh.models import ColumnDataSource
    from bokeh.models.widgets.tables import DataTable, TableColumn

    t = data.trades
    source = ColumnDataSource({"n": [x["number"] for x in t], "entry": [x["entry"] for x in t],
                               "exit": [x["exit"] for x in t],
                               "entry_price": [f"{x['entryPrice']:,.4f}" for x in t],
                               "exit_price": [f"{x['exitPrice']:,.4f}" for x in t],
                               "units": [f"{x['units']:,.6f}" for x in t], "pnl": [x["pnlText"] for x in t],
                               "pct": [x["pnlPercentText"] for x in t], "fees": [f"{x['fees']:,.2f}" for x in t],
                               "reason": [x["reason"] for x in t]})
    columns = [TableColumn(field=f, title=title) for f, title in (
        ("n", "#"), ("entry", "entry (UTC)"), ("exit", "exit (UTC)"), ("entry_price", "entry price"),
        ("exit_price", "exit price"), ("units", "units"), ("pnl", "pnl"), ("pct", "pnl %"), ("fees", "fees"),
        ("reason", "exit reason"))]
    # reorderable columns would need jquery-ui, which BokehJS does not bundle (a console warning)
    return DataTable(name="trades", source=source, columns=columns, height=260, width=WIDTH, index_position=None,
                     sizing_mode="stretch_width", reorderable=False)
