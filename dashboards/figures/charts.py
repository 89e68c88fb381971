"""Drawing primitives of the lesson figures: panels of grouped bars, metric lines over a categorical x, a table
rendered as a heat-map with numbers, mean curves with a std band. They draw; they never read MLflow."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dashboards.figures.style import new_figure, yerr

# (mean, std, n) of one plotted number; None where the runs have no such combination.
Cell = tuple[float, float, float] | None


def panel_grid(count: int, panel_w: float, panel_h: float, extra_h: float = 0.9, max_cols: int = 3):
    """A figure with ``count`` panels in rows of at most ``max_cols``; returns (figure, flat list of axes)."""
    cols = min(count, max_cols)
    rows = math.ceil(count / cols)
    fig = new_figure(panel_w * cols + 0.4, panel_h * rows + extra_h)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def grouped_bars(
    ax: Axes,
    groups: Sequence[str],
    series: Sequence[str],
    cell: Callable[[int, int], Cell],
    colour: Callable[[int, int], str],
    alpha: Callable[[int], float] = lambda s: 1.0,
    hatch: Callable[[int], str | None] = lambda s: None,
    values: bool = False,
) -> None:
    """One cluster of bars per group (x), one bar per series inside it, error bar = std across seeds."""
    width = 0.8 / max(len(series), 1)
    tops = []
    for s in range(len(series)):
        xs, means, errs, colours = [], [], [], []
        for g in range(len(groups)):
            found = cell(g, s)
            if found is None or not np.isfinite(found[0]):
                continue
            xs.append(g - 0.4 + width * (s + 0.5))
            means.append(found[0])
            errs.append(float(yerr(found[1], found[2])))
            colours.append(colour(g, s))
        if not xs:
            continue
        bars = ax.bar(
            xs, means, width * 0.92, yerr=errs, color=colours, alpha=alpha(s), hatch=hatch(s),
            edgecolor="#333333", linewidth=0.5, error_kw={"elinewidth": 1, "ecolor": "#222222", "alpha": 1.0},
        )  # fmt: skip
        if values:
            ax.bar_label(bars, labels=[f"{m:.1f}" for m in means], fontsize=7, padding=2)
        tops += [m + (e if np.isfinite(e) else 0) for m, e in zip(means, errs, strict=True)]
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlim(-0.55, len(groups) - 0.45)
    if tops:
        ax.set_ylim(0, max(tops) * 1.12 if max(tops) > 0 else 1)


def condition_legend(
    fig: Figure, labels: Sequence[str], alphas: Sequence[float], hatches: Sequence[str | None]
) -> None:
    handles = [
        Patch(facecolor="#555555", alpha=a, hatch=h, edgecolor="#333333", label=label)
        for label, a, h in zip(labels, alphas, hatches, strict=True)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)


def category_lines(
    ax: Axes, xlabels: Sequence[str], names: Sequence[str], cell: Callable[[int, int], Cell], colours: Sequence[str]
) -> list:
    """One line per name over categorical x positions, error bars = std across seeds; returns the line handles."""
    handles = []
    for i, name in enumerate(names):
        points = [(x, cell(x, i)) for x in range(len(xlabels))]
        points = [(x, c) for x, c in points if c is not None and np.isfinite(c[0])]
        if not points:
            continue
        xs = [x for x, _ in points]
        means = [c[0] for _, c in points]
        errs = [float(yerr(c[1], c[2])) for _, c in points]
        handle = ax.errorbar(
            xs, means, yerr=errs, marker="o", markersize=5, linewidth=1.8, color=colours[i], label=name
        )
        handles.append(handle)
    ax.set_xticks(range(len(xlabels)), xlabels)
    ax.set_xlim(-0.3, len(xlabels) - 0.7)
    return handles


def number_table(
    fig: Figure, ax: Axes, rows: Sequence[str], cols: Sequence[str], cells: Sequence[Sequence[Cell]]
) -> None:
    """A table as a heat-map: each column shaded on its own scale (darker = better), ``mean ± std`` written in."""
    means = np.array([[np.nan if c is None else c[0] for c in row] for row in cells], dtype=float)
    shade = np.full_like(means, np.nan)
    for j in range(means.shape[1]):
        column = means[:, j]
        finite = column[np.isfinite(column)]
        if finite.size:
            low, high = finite.min(), finite.max()
            shade[:, j] = 0.5 if high == low else (column - low) / (high - low)
    ax.imshow(shade, cmap="Blues", vmin=-0.15, vmax=1.6, aspect="auto")
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            if c is None or not np.isfinite(c[0]):
                text = "-"
            elif c[2] > 1 and np.isfinite(c[1]):
                text = f"{c[0]:.1f} ± {c[1]:.1f}"
            else:
                text = f"{c[0]:.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=10, color="#111111")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks(np.arange(-0.5, len(cols)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)


def mean_curve(ax: Axes, steps, mean, std, n, colour: str, label: str):
    """A mean line with a shaded ±std band where more than one run contributes."""
    (line,) = ax.plot(steps, mean, color=colour, linewidth=1.6, label=label)
    band = np.asarray(n) > 1
    if band.any():
        ax.fill_between(steps, mean - std, mean + std, where=band, color=colour, alpha=0.18, linewidth=0)
    return line
