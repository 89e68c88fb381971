"""The lesson figures of ``mm1 plots``, one drawer per figure kind: each takes one sweep's runs (``Sweep``), draws
with matplotlib's object API and returns a ``Figure`` (files written, seed-averaged table kept). Which sweep gets
which figure is decided in ``dashboards.plots``."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboards import DashboardError
from dashboards.figures import charts
from dashboards.figures.style import (
    HIGHRES_LABELS,
    HIGHRES_MARKERS,
    TEXTCORE,
    combo_label,
    connector_colour,
    metric_colour,
    metric_label,
    save,
    series_colour,
    value_label,
)
from dashboards.runs import SEEDS, SFT, seed_average

MIXTURE = ("data.mixture.caption", "data.mixture.interleaved", "data.mixture.text")
CAPTION_SHARE, CAP_INT = "caption share of image data", "cap/int"
IMAGE_SHARE, IMAGE_TEXT = "image share", "image:text"
RESOLUTION, MODE = "image resolution", "model.highres.mode"
CONNECTOR, ENCODER, ENCODER_RES = "model.connector.type", "model.encoder.name", "model.encoder.resolution"
LOSS = "train/loss"
MAX_PANELS, MAX_CURVES = 6, 24
PERCENT = "meta-average over tasks (%)"
SCORE = "score (%)"


@dataclass
class Figure:
    name: str
    title: str
    files: list[Path]  # PNG, SVG, then the data table as CSV
    sweeps: set[str]  # sweep tags of the runs it used ("" for runs without one)
    table: pd.DataFrame  # the seed-averaged numbers it plots: by-columns, <metric>, <metric> std, <metric> n
    caption: str = ""
    runs: int = 0
    seeds: int = 0
    display: pd.DataFrame | None = None  # what index.html shows when not the whole table (learning curves)


@dataclass
class Sweep:
    """One sweep's finished runs (params, metrics, derived axes) and where its figures go."""

    tag: str
    label: str
    raw: pd.DataFrame
    frame: pd.DataFrame
    varied: list[str]
    out: Path
    store: Any
    shots: list[str] = field(default_factory=list)
    lr_metric: str | None = None  # Fig. 6's selection metric (default: the largest-k shot average, as MM1)
    lr_mode: str = "max"
    stage: str = "pretrain"  # train.stage of its runs: pre-training figures are drawn from pretrain sweeps only

    @property
    def sft(self) -> bool:
        return self.stage == SFT

    @property
    def metrics(self) -> list[str]:  # Fig. 5's four: TextCore, then k-shot averages
        return ([TEXTCORE] if TEXTCORE in self.frame else []) + self.shots

    def nunique(self, column: str) -> int:
        return self.frame[column].nunique() if column in self.frame else 0

    def context(self, axes: Sequence[str]) -> list[str]:
        """The varied params a figure does not put on its axes: they become its panels, groups or lines."""
        return [p for p in self.varied if p not in axes]

    def need(self, metrics: Sequence[str]) -> list[str]:
        if not self.shots:
            raise DashboardError("its runs logged no eval/avg/<k>shot metric")
        return list(metrics)


def cap_int_label(share: float) -> str:
    """Caption / interleaved percentages of the image data as the paper writes them (2/3 -> ``66/33``)."""
    if not np.isfinite(share):
        return "-"
    return f"{math.floor(100 * share + 1e-6)}/{math.floor(100 * (1 - share) + 1e-6)}"


def image_text_label(share: float) -> str:
    """Image : text-only percentages (10/11 -> ``91:9``)."""
    return f"{round(100 * share)}:{round(100 * (1 - share))}" if np.isfinite(share) else "-"


# ------------------------------------------------------------------------------------------------- helpers
def _cell(row: Any, metric: str) -> charts.Cell:
    return (float(row[metric]), float(row[f"{metric} std"]), float(row[f"{metric} n"]))


def _combos(table: pd.DataFrame, params: Sequence[str], sep: str = " · ") -> list[str]:
    return list(dict.fromkeys(combo_label(row, params, sep) for _, row in table.iterrows()))


def _seeds(frame: pd.DataFrame) -> int:
    """Distinct seeds; for SFT runs, distinct (own seed, source run's seed) pairs."""
    columns = [c for c in SEEDS if c in frame]
    return len(frame[columns].dropna(how="all").drop_duplicates()) if columns else 1


AVERAGED = "each {unit} averages {per} run(s) (mean, error bar = std across seeds, none where n = 1)."


def _finish(
    s: Sweep,
    name: str,
    title: str,
    fig: Any,
    table: pd.DataFrame,
    metrics: Sequence[str],
    note: str = "",
    averaged: str = AVERAGED,
    unit: str = "point",
) -> Figure:
    stem = f"{name}-{re.sub(r'[^A-Za-z0-9._-]+', '_', s.label)}"
    files = save(fig, s.out, stem)
    csv = s.out / f"{stem}.csv"
    table.to_csv(csv, index=False)
    used = s.frame[list(metrics)].notna().any(axis=1) if metrics else pd.Series(True, index=s.frame.index)
    runs, seeds = int(used.sum()), _seeds(s.frame[used])
    ns = table[[f"{m} n" for m in metrics if f"{m} n" in table]].to_numpy().ravel() if metrics else []
    per = f"{int(np.nanmin(ns))}-{int(np.nanmax(ns))}" if len(ns) and np.nanmin(ns) != np.nanmax(ns) else None
    per = per or (str(int(ns[0])) if len(ns) else "1")
    held = _held(s)
    caption = f"Sweep {s.label}: {runs} run(s), {seeds} seed(s); {averaged.format(unit=unit, per=per)} {note}".strip()
    caption += f" Held constant: {held}." if held else ""
    return Figure(name, title, [*files, csv], {s.tag}, table, caption, runs, seeds)


def _held(s: Sweep) -> str:
    keys = ["model.encoder.name", "model.decoder.name", CONNECTOR, "model.connector.num_tokens", ENCODER_RES, MODE]
    keys += ["train.max_steps", "train.lr", "train.init_from.sweep", "init.step"]
    constant = [k for k in keys if k in s.raw and k not in s.varied and s.raw[k].nunique() == 1]
    return ", ".join(value_label(k, s.raw[k].iloc[0]) if k != "train.max_steps" else
                     f"{s.raw[k].iloc[0]} steps" for k in constant)  # fmt: skip


def _suptitle(fig: Any, title: str, s: Sweep) -> str:
    full = f"{title} (sweep {s.label})"
    fig.suptitle(full, fontweight="bold")
    fig.set_figwidth(max(fig.get_figwidth(), 0.12 * len(full) + 0.6))  # the bold title fits the figure
    return full


def _panels_of(table: pd.DataFrame, ctx: Sequence[str]) -> tuple[list[str], str]:
    panels = _combos(table, ctx)
    note = ""
    if len(panels) > MAX_PANELS:
        note = f" Showing the first {MAX_PANELS} of {len(panels)} combinations of {', '.join(ctx)}."
        panels = panels[:MAX_PANELS]
    return panels, note


# ------------------------------------------------------------------------------------------------- figures
def draw_encoders(s: Sweep) -> Figure:
    shots = s.need(s.shots)
    axes = [c for c in (ENCODER, ENCODER_RES) if c in s.frame]
    by = axes + s.context(axes)
    table = seed_average(s.frame, by, shots)
    rows = [combo_label(row, by) for _, row in table.iterrows()]
    cells = [[_cell(row, m) for m in shots] for _, row in table.iterrows()]
    width = 1.0 + 0.075 * max(len(r) for r in rows) + 1.35 * len(shots)
    fig = charts.new_figure(max(width, 6.0), 1.35 + 0.42 * len(rows))
    ax = fig.subplots()
    charts.number_table(fig, ax, rows, [metric_label(m) for m in shots], cells)
    ax.set_xlabel(f"{PERCENT}, mean ± std over seeds")
    title = _suptitle(fig, "Table 1 - image encoder x resolution ablation", s)
    return _finish(s, "encoders", title, fig, table, shots, "Shading: darker = higher within a column.", unit="cell")


def draw_connectors(s: Sweep) -> Figure:
    shots = s.need(s.shots)
    ctx = s.context([CONNECTOR])
    table = seed_average(s.frame, [*ctx, CONNECTOR], shots)
    groups = _combos(table, ctx, "\n")
    found = list(dict.fromkeys(table[CONNECTOR]))
    types = [t for t in ("avg-pool", "attn-pool", "c-abstractor") if t in found] + [
        t for t in found if t not in ("avg-pool", "attn-pool", "c-abstractor")
    ]
    cells = {(combo_label(r, ctx, "\n"), r[CONNECTOR], m): _cell(r, m) for _, r in table.iterrows() for m in shots}
    panel_w = max(3.4, 0.26 * len(groups) * len(types) + 1.0)
    fig, axes = charts.panel_grid(len(shots), panel_w, 3.4, max_cols=3 if panel_w <= 5.5 else 2)
    for ax, metric in zip(axes, shots, strict=True):
        charts.grouped_bars(
            ax, groups, types,
            cell=lambda g, t, m=metric: cells.get((groups[g], types[t], m)),
            colour=lambda g, t: connector_colour(types[t], types),
        )  # fmt: skip
        ax.set_title(metric_label(metric))
        if not ctx:
            ax.set_xticks([])
        ax.set_ylabel(PERCENT if ax is axes[0] else "")
    handles = [
        charts.Patch(facecolor=connector_colour(t, types), edgecolor="#333333", linewidth=0.5, label=t) for t in types
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(types), frameon=False, title="VL connector")
    title = _suptitle(fig, "Fig. 4 - VL connector type x image tokens x resolution", s)
    return _finish(s, "connectors", title, fig, table, shots)


def _metric_lines(s: Sweep, name: str, title: str, x: str, label: str, xlabel: str, ctx: list[str]) -> Figure:
    """Fig. 5a/5c: metrics as lines over a categorical mixture axis (sorted by descending ``x``), panel per context."""
    metrics = s.need(s.metrics)
    table = seed_average(s.frame[s.frame[x].notna()], [*ctx, x], metrics)
    table.insert(len(ctx) + 1, label, table[x].map(cap_int_label if label == CAP_INT else image_text_label))
    xs = sorted(table[x].unique(), reverse=True)
    xlabels = [(cap_int_label if label == CAP_INT else image_text_label)(v) for v in xs]
    panels, note = _panels_of(table, ctx)
    cells = {(combo_label(r, ctx), r[x], m): _cell(r, m) for _, r in table.iterrows() for m in metrics}
    fig, axes = charts.panel_grid(len(panels), max(4.2, 0.75 * len(xs) + 1.5), 3.4, max_cols=2)
    handles = []
    for ax, panel in zip(axes, panels, strict=True):
        handles = charts.category_lines(
            ax, xlabels, [metric_label(m) for m in metrics],
            cell=lambda i, j, p=panel: cells.get((p, xs[i], metrics[j])),
            colours=[metric_colour(m, metrics) for m in metrics],
        ) or handles  # fmt: skip
        ax.set_xlabel(xlabel)
        ax.set_ylabel(SCORE)
        if ctx:
            ax.set_title(panel)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(metrics), frameon=False)
    full = _suptitle(fig, title, s)
    return _finish(s, name, full, fig, table, metrics, "TextCore: text-only tasks; k-shot: meta-average." + note)


def draw_data_mixture(s: Sweep) -> Figure:
    return _metric_lines(
        s, "data-mixture", "Fig. 5a - caption / interleaved mixture", CAPTION_SHARE, CAP_INT,
        "caption / interleaved (% of image data)", s.context(MIXTURE[:2]),
    )  # fmt: skip


def draw_image_text_ratio(s: Sweep) -> Figure:
    ctx = s.context(MIXTURE) + ([CAP_INT] if s.nunique(CAPTION_SHARE) > 1 else [])
    return _metric_lines(
        s, "data-image-text-ratio", "Fig. 5c - image : text-only ratio", IMAGE_SHARE, IMAGE_TEXT,
        "image (caption + interleaved) : text-only (%)", ctx,
    )  # fmt: skip


def _condition_bars(s: Sweep, name: str, title: str, axis: str, labels: Callable[[Any], str], ctx: list[str]):
    """Fig. 5b/5d: per metric (x) one bar per condition; colour = metric, shade = condition; panel per context."""
    metrics = s.need(s.metrics)
    table = seed_average(s.frame, [*ctx, axis], metrics)
    conditions = sorted(table[axis].unique())
    panels, note = _panels_of(table, ctx)
    cells = {(combo_label(r, ctx), r[axis], m): _cell(r, m) for _, r in table.iterrows() for m in metrics}
    alphas = list(np.linspace(0.35, 1.0, len(conditions)))
    hatches = ["///"] + [None] * (len(conditions) - 1)
    panel_w = max(4.0, 0.5 * len(metrics) * len(conditions) + 1.0)
    fig, axes = charts.panel_grid(len(panels), panel_w, 3.4, max_cols=3 if panel_w <= 5.5 else 2)
    for ax, panel in zip(axes, panels, strict=True):
        charts.grouped_bars(
            ax, [metric_label(m) for m in metrics], conditions,
            cell=lambda g, c, p=panel: cells.get((p, conditions[c], metrics[g])),
            colour=lambda g, c: metric_colour(metrics[g], metrics),
            alpha=lambda c: alphas[c], hatch=lambda c: hatches[c], values=True,
        )  # fmt: skip
        ax.set_ylabel(SCORE)
        if ctx:
            ax.set_title(panel)
    charts.condition_legend(fig, [labels(c) for c in conditions], alphas, hatches)
    full = _suptitle(fig, title, s)
    return _finish(s, name, full, fig, table, metrics, "Bar colour = metric, shade = condition." + note)


def draw_text_only(s: Sweep) -> Figure:
    ctx = s.context(MIXTURE) + ([CAP_INT] if s.nunique(CAPTION_SHARE) > 1 else [])
    return _condition_bars(
        s, "data-text-only", "Fig. 5b - with and without text-only data", MIXTURE[2],
        lambda v: "without text-only" if v == 0 else f"with text-only ({v:.0%})", ctx,
    )  # fmt: skip


def draw_synthetic(s: Sweep) -> Figure:
    axis = "data.synthetic_captions"
    return _condition_bars(
        s, "data-synthetic", "Fig. 5d - synthetic (VeCap-style) captions", axis,
        lambda v: "with synthetic captions" if v else "without synthetic captions", s.context([axis]),
    )  # fmt: skip


def draw_lr_scaling(s: Sweep) -> Figure:
    try:
        from dashboards.lrfit import draw_law, fit_law
    except ImportError as exc:
        raise DashboardError(f"dashboards.lrfit is not available ({exc})") from None
    metric = s.lr_metric or s.need(s.shots)[-1]
    result = fit_law(s.raw, metric, s.lr_mode)
    stem = f"lr-scaling-{re.sub(r'[^A-Za-z0-9._-]+', '_', s.label)}"
    files = [Path(p) for p in draw_law(result, s.raw, metric, s.out, stem=stem)]
    table = pd.DataFrame(result.get("points", []))
    csv = s.out / f"{stem}.csv"
    table.to_csv(csv, index=False)
    fit = ""
    if {"a", "b", "r2"} <= result.keys():
        a, b = result["a"], result["b"]
        fit = f" Fit: lr = exp({a:.4g} ln N {'-' if b < 0 else '+'} {abs(b):.4g}), R² = {result['r2']:.3f}."
    caption = (
        f"Sweep {s.label}: {len(s.raw)} run(s), {_seeds(s.raw)} seed(s). Best peak LR per decoder size by "
        f"{metric_label(metric)} ({metric}, {'highest' if s.lr_mode == 'max' else 'lowest'}), fitted in log space as "
        f"MM1 Eq. 1.{fit}"
    )
    title = f"Fig. 6 - optimal peak LR vs decoder size (sweep {s.label})"
    return Figure("lr-scaling", title, [*files, csv], {s.tag}, table, caption, len(s.raw), _seeds(s.raw))


def draw_resolution(s: Sweep) -> Figure:
    shots = s.need(s.shots)
    ctx = s.context([ENCODER_RES, "model.highres.resolution", MODE])
    table = seed_average(s.frame, [MODE, *ctx, RESOLUTION], shots)
    order = {mode: i for i, mode in enumerate(HIGHRES_MARKERS)}
    keys = list(dict.fromkeys((r[MODE], combo_label(r, ctx)) for _, r in table.iterrows()))
    keys.sort(key=lambda key: order.get(key[0], len(order)))
    modes = {mode for mode, _ in keys}
    note = ""
    if len(keys) > MAX_CURVES // 2:
        note, keys = f" Showing {MAX_CURVES // 2} of {len(keys)} lines.", keys[: MAX_CURVES // 2]
    lines: dict[tuple, list] = {}
    for _, r in table.iterrows():
        for m in shots:
            if np.isfinite(r[m]) and np.isfinite(r[RESOLUTION]):
                lines.setdefault((r[MODE], combo_label(r, ctx), m), []).append((r[RESOLUTION], _cell(r, m)))
    resolutions = sorted(table[RESOLUTION].dropna().unique())
    fig, axes = charts.panel_grid(len(shots), 4.0, 3.4)
    for ax, metric in zip(axes, shots, strict=True):
        for i, (mode, combo) in enumerate(keys):
            points = sorted(lines.get((mode, combo, metric), []), key=lambda p: p[0])
            if not points:
                continue
            colour = series_colour(i, len(keys))
            label = " · ".join([HIGHRES_LABELS.get(mode, mode)] * (len(modes) > 1 or not ctx) + [combo] * bool(ctx))
            ax.errorbar(
                [math.log2(x) for x, _ in points], [c[0] for _, c in points],
                yerr=[float(charts.yerr(c[1], c[2])) for _, c in points],
                marker=HIGHRES_MARKERS.get(mode, "D"), markersize=5, linewidth=1.8, color=colour, label=label,
            )  # fmt: skip
        ax.set_xticks([math.log2(r) for r in resolutions], [f"{int(r)}" for r in resolutions])  # log2 spacing
        ax.set_xlabel("image resolution (px per side)")
        ax.set_ylabel(PERCENT if ax is axes[0] else "")
        ax.set_title(metric_label(metric))
    handles, labels = axes[0].get_legend_handles_labels()
    legend_title = "" if len(modes) > 1 or not ctx else f"high-res mode: {HIGHRES_LABELS.get(next(iter(modes)))}"
    fig.legend(
        handles, labels, loc="outside lower center", ncols=min(len(labels), 3), frameon=False, title=legend_title
    )
    title = _suptitle(fig, "Fig. 7b - impact of image resolution", s)
    return _finish(
        s,
        "resolution",
        title,
        fig,
        table,
        shots,
        "x: image side (the high-res resolution where a high-res mode is on), log2-spaced." + note,
    )


def draw_learning_curves(s: Sweep) -> Figure:
    params = list(s.varied)
    runs = s.frame[s.frame[LOSS].notna()]
    histories = []
    for _, row in runs.iterrows():
        history = s.store.history(row["run_id"], LOSS)
        history["run_id"], history["series"] = row["run_id"], combo_label(row, params)
        for p in params:
            history[p] = row[p]
        histories.append(history)
    points = pd.concat(histories, ignore_index=True)
    if points.groupby("run_id")["step"].nunique().max() < 2:
        raise DashboardError(f"{LOSS} has one value per run, no per-step history")
    try:
        ordered = runs.sort_values(params, kind="stable") if params else runs
    except TypeError:  # a param mixing types (text and numbers): keep MLflow's order
        ordered = runs
    series = list(dict.fromkeys(combo_label(r, params) for _, r in ordered.iterrows()))
    note = ""
    if len(series) > MAX_CURVES:
        note, series = f" Capped: {MAX_CURVES} of {len(series)} combinations shown.", series[:MAX_CURVES]
    table = seed_average(points, ["series", *params, "step"], ["value"]).rename(
        columns={"value": LOSS, "value std": f"{LOSS} std", "value n": f"{LOSS} n"}
    )
    steps_per = table.groupby("series")["step"].nunique().max()
    window = max(1, int(steps_per // 60))
    fig = charts.new_figure(7.0 + (2.6 if len(series) > 1 else 0) + (2.4 if len(series) > 12 else 0), 4.6)
    ax = fig.subplots()
    for i, name in enumerate(series):
        curve = table[table["series"] == name].sort_values("step")
        mean, std = (curve[c].rolling(window, min_periods=1).mean().to_numpy() for c in (LOSS, f"{LOSS} std"))
        label = name if name != "all runs" else f"all runs ({_seeds(runs)} seed(s))"
        charts.mean_curve(
            ax, curve["step"].to_numpy(), mean, np.nan_to_num(std),
            curve[f"{LOSS} n"].to_numpy(), series_colour(i, len(series)), label,
        )  # fmt: skip
    ax.set_xlabel("training step")
    ax.set_ylabel("train loss (cross-entropy, nats/token)")
    ax.grid(True, axis="both")
    legend_cols = 2 if len(series) > 12 else 1
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=legend_cols, frameon=False, fontsize=8)
    title = _suptitle(fig, "Learning curves - train loss per step", s)
    smoothing = f"rolling mean over {window} logged steps" if window > 1 else "unsmoothed"
    figure = _finish(
        s, "learning-curves", title, fig, table, [LOSS], f"Smoothing: {smoothing}.{note}",
        averaged="each line averages {per} run(s) per step (mean line, shaded band = ± std across seeds).",
    )  # fmt: skip
    last = table.sort_values("step").groupby("series", sort=False).tail(1)
    figure.display = last.set_index("series").loc[[n for n in series if n in set(last["series"])]].reset_index()
    return figure
