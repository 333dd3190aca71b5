"""The report as a PNG (matplotlib, the optional ``plot`` extra): the HTML report's panes, static.

Title and range on top; candles (high-low wick and open-close body) with the flow's price
indicators and each trade's entry ▲ and exit ▼ coloured by its outcome; volume; one pane per
oscillator; equity against buy-and-hold; drawdown. Metrics are in the title block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from capandex.errors import BadRequest
from capandex.report.data import ReportData

GREEN, RED, BLUE, GREY = "#26a69a", "#ef5350", "#1f77b4", "#888888"


def write_png(data: ReportData, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BadRequest("PNG plots need matplotlib: pip install 'capandex[plot]' (or use .html)") from exc
    when = data.time.astype("datetime64[ms]")
    # bodies and volume as thick vertical lines (one collection each: thousands of bar patches
    # would take seconds); ~900 points of axis width shared by the bars
    body = max(0.4, 0.8 * 900 / max(1, len(when)))
    rows = [4, 1, *([1.3] * len(data.panes)), 2, 1]
    fig, axes = plt.subplots(len(rows), 1, figsize=(14, 3 + 1.6 * sum(rows)), sharex=True,
                             height_ratios=rows, squeeze=False)
    axes = axes[:, 0]
    price, volume, *rest = axes
    up = data.close >= data.open
    colors = np.where(up, GREEN, RED)
    price.vlines(when, data.low, data.high, color=colors, linewidth=0.6)
    price.vlines(when, np.minimum(data.open, data.close), np.maximum(data.open, data.close), color=colors,
                 linewidth=body)
    for line in data.overlays:
        price.plot(when, line.values, linewidth=1, label=line.label)
    if data.trades:
        t = data.trades
        color = [GREEN if x["pnl"] > 0 else RED for x in t]
        entry = np.array([x["entryMs"] for x in t], dtype="datetime64[ms]")
        exit_ = np.array([x["exitMs"] for x in t], dtype="datetime64[ms]")
        entry_price, exit_price = [x["entryPrice"] for x in t], [x["exitPrice"] for x in t]
        price.scatter(entry, entry_price, marker="^", c=color, edgecolors="black", s=30, zorder=3)
        price.scatter(exit_, exit_price, marker="v", c=color, edgecolors="black", s=30, zorder=3)
    price.set_ylabel("price")
    if data.overlays:
        price.legend(loc="upper left", fontsize=8)
    volume.vlines(when, 0, data.volume, color=colors, alpha=0.5, linewidth=body)
    volume.set_ylabel("volume")
    for ax, pane in zip(rest, data.panes, strict=False):
        for line in pane.lines:
            if line.label.endswith("histogram"):
                ax.vlines(when, 0, np.nan_to_num(line.values), color=GREY, alpha=0.5, linewidth=body,
                          label=line.label)
            else:
                ax.plot(when, line.values, linewidth=1, label=line.label)
        ax.set_ylabel(pane.title, fontsize=8)
        ax.legend(loc="upper left", fontsize=7)
    equity, drawdown = rest[-2], rest[-1]
    equity.plot(when, data.equity, color=BLUE, linewidth=1.2, label="strategy")
    equity.plot(when, data.buy_and_hold, color=GREY, linestyle="--", linewidth=1, label="buy and hold")
    equity.set_ylabel("equity")
    equity.legend(loc="upper left", fontsize=8)
    drawdown.fill_between(when, -data.drawdown, 0, color=RED, alpha=0.4)
    drawdown.set_ylabel("drawdown %")
    pairs = [f"{label}: {value}" for label, value in data.metrics]
    metrics = "\n".join("   ".join(pairs[i:i + 6]) for i in range(0, len(pairs), 6))
    fig.suptitle(f"{data.title}\n{data.subtitle}\n{metrics}", fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=100)
    plt.close(fig)
