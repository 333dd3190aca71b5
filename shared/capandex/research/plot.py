"""Charts of an optimisation: the objective over the parameters, and the walk-forward equity.

With two or more parameters the objective is a heatmap over the first two (each cell the best
value over the other parameters; blank where every combination was refused or is undefined); with
one it is a line. The walk-forward chart is the stitched out-of-sample equity. HTML is a
self-contained page (inline SVG, no scripts); PNG needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from capandex.errors import BadRequest
from capandex.research.request import OptimizeSpec

_W, _H, _PAD = 760, 420, 70


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
    xs, ys, grid = objective_grid(result, spec)
    names, metric = spec.space.names, spec.objective.metric
    title = f"{metric} over {names[0]}" + (f" × {names[1]}" if len(names) > 1 else "")
    chart = _heatmap_svg(xs, ys, grid, names) if len(names) > 1 else _line_svg(xs, grid[0], names[0], metric)
    best = result.get("best") or {}
    parts = [f"<h2>{html.escape(title)}</h2>", chart,
             f"<p>best: {html.escape(json_params(best.get('params')))}</p>"]
    curve = ((result.get("walkForward") or {}).get("outOfSample") or {}).get("equityCurve")
    if curve:
        equity = np.array([point["equity"] for point in curve])
        parts += ["<h2>Walk-forward: stitched out-of-sample equity</h2>",
                  _line_svg(list(range(len(equity))), equity, "test candles", "equity", numeric_x=False)]
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>Capandex optimisation</title>"
            "<style>body{font:14px system-ui,sans-serif;margin:20px}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


def json_params(params: dict[str, Any] | None) -> str:
    return "none" if not params else ", ".join(f"{k} = {v}" for k, v in params.items())


def _color(fraction: float) -> str:
    """Dark blue (low) to yellow (high)."""
    low, high = np.array([40, 30, 110]), np.array([250, 220, 40])
    r, g, b = (low + (high - low) * min(max(fraction, 0.0), 1.0)).round().astype(int)
    return f"rgb({r},{g},{b})"


def _heatmap_svg(xs: list[Any], ys: list[Any], grid: np.ndarray, names: tuple[str, ...]) -> str:
    finite = grid[np.isfinite(grid)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    cw, ch = (_W - _PAD - 10) / len(xs), (_H - _PAD - 10) / len(ys)
    cells = []
    for j, _ in enumerate(ys):
        for i, _ in enumerate(xs):
            value = grid[j, i]
            if math.isnan(value):
                continue
            fraction = (value - low) / (high - low) if high > low else 0.5
            x, y = _PAD + i * cw, 10 + (len(ys) - 1 - j) * ch
            cells.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cw + 0.5:.1f}" height="{ch + 0.5:.1f}" '
                         f'fill="{_color(fraction)}"><title>{names[0]}={xs[i]}, {names[1]}={ys[j]}: '
                         f'{value:.4g}</title></rect>')
    labels = [f'<text x="{_PAD + (i + 0.5) * cw:.1f}" y="{_H - _PAD + 18}" font-size="10" '
              f'text-anchor="middle">{x}</text>' for i, x in enumerate(xs) if i % max(1, len(xs) // 12) == 0]
    labels += [f'<text x="{_PAD - 6}" y="{10 + (len(ys) - 0.5 - j) * ch:.1f}" font-size="10" '
               f'text-anchor="end">{y}</text>' for j, y in enumerate(ys) if j % max(1, len(ys) // 12) == 0]
    axes = (f'<text x="{_W / 2}" y="{_H - 20}" text-anchor="middle">{html.escape(names[0])}</text>'
            f'<text x="14" y="{_H / 2}" transform="rotate(-90 14 {_H / 2})" text-anchor="middle">'
            f'{html.escape(names[1])}</text>')
    legend = f"<p>range {low:.4g} (dark) – {high:.4g} (yellow); hover a cell for its value</p>"
    return f'<svg width="{_W}" height="{_H}">{"".join(cells)}{"".join(labels)}{axes}</svg>{legend}'


def _line_svg(xs: list[Any], values: np.ndarray, x_name: str, y_name: str, numeric_x: bool = True) -> str:
    finite = np.isfinite(values)
    if not finite.any():
        return "<p>no values</p>"
    px = np.asarray(xs, dtype=float) if numeric_x else np.arange(len(values), dtype=float)
    x0, x1 = float(px.min()), float(px.max())
    y0, y1 = float(values[finite].min()), float(values[finite].max())
    sx = (lambda v: _PAD + (v - x0) / (x1 - x0) * (_W - _PAD - 10)) if x1 > x0 else (lambda v: _W / 2)
    sy = (lambda v: _H - _PAD - (v - y0) / (y1 - y0) * (_H - _PAD - 10)) if y1 > y0 else (lambda v: _H / 2)
    points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, ok in zip(px, values, finite, strict=True) if ok)
    return (f'<svg width="{_W}" height="{_H}"><polyline fill="none" stroke="#1f77b4" stroke-width="1.5" '
            f'points="{points}"/><text x="{_W / 2}" y="{_H - 20}" text-anchor="middle">{html.escape(x_name)}</text>'
            f'<text x="4" y="14">{html.escape(y_name)} {y0:.4g} – {y1:.4g}</text></svg>')


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
