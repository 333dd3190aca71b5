"""Charts of a backtest: equity, drawdown and trade markers, as PNG (matplotlib) or HTML.

The HTML file is self-contained (inline SVG, no scripts or network assets). matplotlib is the
optional ``plot`` extra, imported only when a PNG is asked for.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from capandex.engine.result import BacktestResult, downsample_indices
from capandex.errors import BadRequest

_W, _H, _PAD = 1000, 260, 50


def write_plot(result: BacktestResult, path: str | Path) -> None:
    """Write the chart to ``path``; the suffix picks the format (.png or .html)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        _write_png(result, path)
    else:
        path.write_text(render_html(result), encoding="utf-8")


def _drawdown_percent(equity: np.ndarray) -> np.ndarray:
    return (1.0 - equity / np.maximum.accumulate(equity)) * 100.0


def _write_png(result: BacktestResult, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BadRequest("PNG plots need matplotlib: pip install 'capandex[plot]' (or use .html)") from exc
    when = result.time.astype("datetime64[ms]")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, height_ratios=(3, 1))
    top.plot(when, result.equity, lw=1, color="#1f77b4", label="equity")
    entries = np.searchsorted(result.time, result.table.entry_time)
    exits = np.searchsorted(result.time, result.table.exit_time)
    top.scatter(when[entries], result.equity[entries], marker="^", color="green", s=18, label="entry")
    top.scatter(when[exits], result.equity[exits], marker="v", color="red", s=18, label="exit")
    top.set_ylabel("equity")
    top.legend(loc="upper left")
    bottom.fill_between(when, -_drawdown_percent(result.equity), color="#d62728", alpha=0.4)
    bottom.set_ylabel("drawdown %")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_html(result: BacktestResult) -> str:
    """A standalone HTML page with SVG charts (at most 2,000 points, troughs kept)."""
    idx = downsample_indices(result.equity, 2000)
    x = _scale(idx.astype(float), 0, max(1, len(result.equity) - 1), _PAD, _W - 10)
    equity = result.equity[idx]
    y = _scale(equity, equity.min(), equity.max(), _H - 25, 10)
    dd = _drawdown_percent(result.equity)[idx]
    y_dd = _scale(dd, 0, max(dd.max(), 1e-12), 10, 130)
    markers = []
    for key, color, shape in (("entry_time", "green", "▲"), ("exit_time", "red", "▼")):
        bars = np.searchsorted(result.time, getattr(result.table, key))
        mx = _scale(bars.astype(float), 0, max(1, len(result.equity) - 1), _PAD, _W - 10)
        my = _scale(result.equity[bars], equity.min(), equity.max(), _H - 25, 10)
        markers += [f'<text x="{a:.1f}" y="{b:.1f}" fill="{color}" font-size="9" text-anchor="middle">'
                    f'{shape}</text>' for a, b in zip(mx[:2000], my[:2000], strict=True)]
    m = result.metrics
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in m.items())
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=True))
    area = f"{_PAD},10 " + " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y_dd, strict=True)) + f" {_W - 10},10"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Capandex backtest</title>
<style>body{{font:14px system-ui,sans-serif;margin:20px}}td{{padding:2px 10px}}</style></head><body>
<h2>Backtest</h2><table>{rows}</table>
<h3>Equity ({equity.min():,.2f} – {equity.max():,.2f}) with entries ▲ and exits ▼</h3>
<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}"><rect width="100%" height="100%" fill="#fafafa"/>
<polyline fill="none" stroke="#1f77b4" stroke-width="1.2" points="{line}"/>{''.join(markers)}</svg>
<h3>Drawdown (max {dd.max():.2f} %)</h3>
<svg width="{_W}" height="140" viewBox="0 0 {_W} 140"><rect width="100%" height="100%" fill="#fafafa"/>
<polygon fill="#d62728" fill-opacity="0.4" points="{area}"/></svg>
</body></html>
"""


def _scale(values: np.ndarray, low: float, high: float, out_low: float, out_high: float) -> np.ndarray:
    span = high - low
    if span <= 0:
        return np.full(len(values), (out_low + out_high) / 2)
    return out_low + (values - low) / span * (out_high - out_low)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.4f}" if isinstance(value, float) else str(value)
