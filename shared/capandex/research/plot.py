"""Charts of an optimisation: the objective over the parameters, and the walk-forward equity.

With two or more parameters the objective is a heatmap over the first two (each cell the best
value over the other parameters; blank where every combination was refused or is undefined); with
one it is a line. The walk-forward chart is the stitched out-of-sample equity on a time axis, each
test window marked, above the per-window table (chosen parameters, in-sample and out-of-sample
objective). HTML is one self-contained Bokeh page (BokehJS inlined: it opens offline; hover shows
every cell and point), as the backtest report; PNG needs matplotlib (the ``plot`` extra).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from capandex.errors import BadRequest
from capandex.research.request import OptimizeSpec

_WIDTH = 1100


def objective_grid(result: dict[str, Any], spec: OptimizeSpec) -> tuple[list[Any], list[Any], np.ndarray]:
    """``(x values, y values, values[y, x])`` of the objective; one parameter gives a single row."""
    names = spec.space.names
    xs = list(spec.space.parameters[0].values)
    ys = list(spec.space.parameters[1].values) if len(names) > 1 else [None]
    grid = np.full((len(ys), len(xs)), np.nan)
    sign = 1.0 if spec.objective.maximize else -1.0
    for trial in result.get("trials", []):
        value = (trial.get("metrics") or {}).get(spec.objective.metric)
        if value is None:
            continue
        x = xs.index(trial["params"][names[0]])
        y = ys.index(trial["params"][names[1]]) if len(names) > 1 else 0
        if np.isnan(grid[y, x]) or sign * value > sign * grid[y, x]:
            grid[y, x] = value
    return xs, ys, grid


def write_plot(result: dict[str, Any], spec: OptimizeSpec, path: str | Path) -> None:
    """Write the charts to ``path`` (.png or .html)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        _write_png(result, spec, path)
    else:
        path.write_text(render_html(result, spec), encoding="utf-8")


def render_html(result: dict[str, Any], spec: OptimizeSpec) -> str:
    """The page: header (winner, walk-forward efficiency), objective chart, walk-forward equity and windows."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models.widgets.markups import Div  # bokeh.models re-exports it by star import, which mypy cannot see
    from bokeh.resources import INLINE

    names, metric = spec.space.names, spec.objective.metric
    title = f"{metric} over {names[0]}" + (f" × {names[1]}" if len(names) > 1 else "")
    parts: list[Any] = [Div(text=_header(result, spec, title), width=_WIDTH),
                        _heatmap(result, spec) if len(names) > 1 else _objective_line(result, spec)]
    wf = result.get("walkForward") or {}
    curve = (wf.get("outOfSample") or {}).get("equityCurve")
    if curve:
        parts += [Div(text="<h3>Walk-forward: stitched out-of-sample equity</h3>", width=_WIDTH),
                  _walk_forward_equity(curve, wf["windows"]), _window_table(wf["windows"], metric)]
    return file_html(column(*parts, sizing_mode="stretch_width"), resources=INLINE,
                     title=f"{title} — optimisation")


def json_params(params: dict[str, Any] | None) -> str:
    return "none" if not params else ", ".join(f"{k} = {v}" for k, v in params.items())


def _header(result: dict[str, Any], spec: OptimizeSpec, title: str) -> str:
    from capandex.report.data import format_metrics

    best = result.get("best")
    lines = [f"<h2 style='margin:0'>{html.escape(title)}</h2>",
             f"<p>{result.get('evaluated', 0):,} trials ({html.escape(spec.method)}), "
             f"{result.get('refused', 0):,} refused by the flow</p>"]
    if best:
        metrics = ", ".join(f"{label} {value}" for label, value in format_metrics(best["metrics"]))
        lines.append(f"<p><b>best: {html.escape(json_params(best['params']))}</b> — {html.escape(metrics)}</p>")
    else:
        lines.append(f"<p><b>{html.escape(result.get('note', 'no winner'))}</b></p>")
    others = spec.space.names[2:]
    if others:
        lines.append(f"<p>Each cell is the best {html.escape(spec.objective.metric)} over "
                     f"{html.escape(', '.join(others))}; hover a cell for its value, blank: no result.</p>")
    wf = result.get("walkForward")
    if wf:
        lines.append(f"<p>Walk-forward {wf['train']}/{wf['test']}{' anchored' if wf['anchored'] else ''}: "
                     f"efficiency {_fmt(wf['efficiency'])} (mean test/train annualised return over "
                     f"{wf['windowsUsed']} of {wf['windowsUsed'] + wf['windowsExcluded']} windows; those whose "
                     f"train return was not positive are left out).</p>")
    return "".join(lines)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.4g}"


def _heatmap(result: dict[str, Any], spec: OptimizeSpec) -> Any:
    from bokeh.models import ColumnDataSource, HoverTool, LinearColorMapper
    from bokeh.models.annotations import ColorBar  # not re-exported where mypy can see it
    from bokeh.models.ranges import FactorRange
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure

    xs, ys, grid = objective_grid(result, spec)
    names, metric = spec.space.names, spec.objective.metric
    j, i = np.nonzero(np.isfinite(grid))
    source = ColumnDataSource({"x": [str(xs[k]) for k in i], "y": [str(ys[k]) for k in j],
                               "value": grid[j, i].tolist()})
    finite = grid[np.isfinite(grid)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    # the better end is yellow whichever way the objective points
    palette = Viridis256 if spec.objective.maximize else tuple(reversed(Viridis256))
    mapper = LinearColorMapper(palette=palette, low=low, high=high if high > low else low + 1)
    fig = figure(name="objective", x_range=FactorRange(factors=[str(x) for x in xs]),
                 y_range=FactorRange(factors=[str(y) for y in ys]), height=460, width=_WIDTH, tools="save,reset",
                 toolbar_location="right", sizing_mode="stretch_width")
    cells = fig.rect("x", "y", 1, 1, source=source, fill_color={"field": "value", "transform": mapper},
                     line_color=None)
    best = (result.get("best") or {}).get("params")
    if best:
        at = [str(xs[xs.index(best[names[0]])])], [str(ys[ys.index(best[names[1]])])]
        fig.scatter(*at, marker="star", size=18, fill_color="white",
                    line_color="black", legend_label="best")
        fig.legend.location = "top_left"
    fig.add_tools(HoverTool(renderers=[cells], tooltips=[(names[0], "@x"), (names[1], "@y"),
                                                         (metric, "@value{0,0.[0000]}")]))
    fig.add_layout(ColorBar(color_mapper=mapper, title=metric), "right")
    fig.xaxis.axis_label, fig.yaxis.axis_label = names[0], names[1]
    fig.grid.visible = False
    return fig


def _objective_line(result: dict[str, Any], spec: OptimizeSpec) -> Any:
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    xs, _, grid = objective_grid(result, spec)
    name, metric = spec.space.names[0], spec.objective.metric
    source = ColumnDataSource({"x": [float(x) for x in xs], "value": grid[0].tolist()})
    fig = figure(name="objective", height=380, width=_WIDTH, tools="pan,wheel_zoom,box_zoom,reset,save",
                 sizing_mode="stretch_width")
    fig.line("x", "value", source=source, line_width=1.6)
    points = fig.scatter("x", "value", source=source, size=6)
    fig.add_tools(HoverTool(renderers=[points], tooltips=[(name, "@x"), (metric, "@value{0,0.[0000]}")]))
    fig.xaxis.axis_label, fig.yaxis.axis_label = name, metric
    return fig


def _walk_forward_equity(curve: list[dict[str, Any]], windows: list[dict[str, Any]]) -> Any:
    from bokeh.models import ColumnDataSource, DatetimeTickFormatter, HoverTool, NumeralTickFormatter
    from bokeh.models.annotations import Span
    from bokeh.plotting import figure

    when = np.array([point["timestamp"].rstrip("Z") for point in curve], dtype="datetime64[ms]").astype(np.int64)
    source = ColumnDataSource({"t": when, "equity": [point["equity"] for point in curve]})
    fig = figure(name="walk-forward", height=320, width=_WIDTH, x_axis_type="datetime", sizing_mode="stretch_width",
                 tools="xpan,xwheel_zoom,box_zoom,reset,save", active_drag="xpan", active_scroll="xwheel_zoom")
    line = fig.line("t", "equity", source=source, line_width=1.6)
    for row in windows[1:]:  # where each test window begins
        start = np.datetime64(row["testStart"].rstrip("Z"), "ms").astype(np.int64)
        fig.add_layout(Span(location=int(start), dimension="height", line_color="#888888", line_dash="dashed"))
    fig.add_tools(HoverTool(renderers=[line], mode="vline", formatters={"@t": "datetime"},
                            tooltips=[("time", "@t{%F %H:%M}"), ("equity", "@equity{0,0.00}")]))
    fig.xaxis.formatter = DatetimeTickFormatter(days="%Y-%m-%d", hours="%m-%d %H:%M")
    fig.yaxis.formatter = NumeralTickFormatter(format="0,0.[00]")
    fig.yaxis.axis_label = "equity (dashed: a new test window)"
    return fig


def _window_table(windows: list[dict[str, Any]], metric: str) -> Any:
    from bokeh.models import ColumnDataSource
    from bokeh.models.widgets.tables import DataTable, TableColumn

    def value(metrics: dict[str, Any] | None, key: str) -> str:
        return "—" if not metrics else _fmt(metrics[key])

    source = ColumnDataSource({
        "window": [row["window"] for row in windows],
        "test": [f"{row['testStart'][:10]} .. {row['testEnd'][:10]}" for row in windows],
        "params": [row.get("note") or json_params(row.get("params")) for row in windows],
        "fit": [value(row.get("inSample"), metric) for row in windows],
        "oos": [value(row.get("outOfSample"), metric) for row in windows],
        "pnl": [value(row.get("outOfSample"), "pnlPercent") for row in windows],
        "trades": [value(row.get("outOfSample"), "totalTrades") for row in windows]})
    columns = [TableColumn(field=f, title=title, width=width) for f, title, width in (
        ("window", "#", 30), ("test", "test window (UTC)", 170), ("params", "chosen on the train window", 380),
        ("fit", f"in sample {metric}", 130), ("oos", f"out of sample {metric}", 150),
        ("pnl", "out of sample return %", 150), ("trades", "trades", 60))]
    return DataTable(name="windows", source=source, columns=columns, height=min(400, 30 + 26 * len(windows)),
                     width=_WIDTH, index_position=None, sizing_mode="stretch_width", reorderable=False,
                     autosize_mode="none")


def _write_png(result: dict[str, Any], spec: OptimizeSpec, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BadRequest("PNG plots need matplotlib: pip install 'capandex[plot]' (or use .html)") from exc
    xs, ys, grid = objective_grid(result, spec)
    names = spec.space.names
    curve = ((result.get("walkForward") or {}).get("outOfSample") or {}).get("equityCurve")
    fig, axes = plt.subplots(1, 2 if curve else 1, figsize=(13 if curve else 7, 5), squeeze=False)
    ax = axes[0][0]
    if len(names) > 1:
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=90, fontsize=7)
        ax.set_yticks(range(len(ys)), [str(y) for y in ys], fontsize=7)
        ax.set_ylabel(names[1])
        fig.colorbar(image, ax=ax, label=spec.objective.metric)
    else:
        ax.plot(xs, grid[0], marker=".")
        ax.set_ylabel(spec.objective.metric)
    ax.set_xlabel(names[0])
    if curve:
        when = np.array([point["timestamp"][:19] for point in curve], dtype="datetime64[s]")
        axes[0][1].plot(when, [point["equity"] for point in curve], lw=1)
        axes[0][1].set_title("walk-forward: stitched out-of-sample equity")
        fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
