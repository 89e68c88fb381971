"""The SFT figures of ``mm1 plots`` (MM1 Sec. 5), drawn per SFT sweep: its runs (``train.stage`` = ``sft``) started
from the checkpoints of a pre-training sweep's runs, named by tag ``mm1.init_from_run`` and described by lineage
params ``init.<path>`` (what the source's sweep varied, e.g. ``init.model.connector.type``) and ``init.step``.

- ``sft-lesson``: do pre-training choices still matter after SFT? Per value of a pre-training choice, the source
  runs' k-shot meta-average (the smallest k) beside the SFT runs' ``eval/sft/avg``.
- ``sft-steps`` (Fig. 7c): SFT scores against the pre-training step of the checkpoint SFT started from.
"""

from __future__ import annotations

import pandas as pd

from dashboards import DashboardError
from dashboards.figures import charts
from dashboards.figures.lessons import (
    MAX_CURVES,
    Figure,
    Sweep,
    _cell,
    _combos,
    _finish,
    _panels_of,
    _suptitle,
)
from dashboards.figures.style import (
    INIT,
    SFT_COLOUR,
    combo_label,
    metric_colour,
    metric_label,
    series_colour,
    short_name,
    shot_k,
    value_label,
)
from dashboards.runs import SFT_AVG, seed_average, sft_metrics

SFT_LOSS = "eval/sft/loss"

INIT_STEP = "init.step"
SOURCE = "source run"  # the run id an SFT run started from
PRETRAIN = "pre-training {metric}"  # the table column holding the source runs' score
# Pre-training choices in the order the paper puts them on x; any other init.* param comes after, by name.
LESSON_AXES = (
    "init.model.connector.type",
    "init.model.encoder.name",
    "init.model.encoder.resolution",
    "init.model.connector.num_tokens",
)
CONNECTORS = ("avg-pool", "attn-pool", "c-abstractor")


def lesson_axes(s: Sweep) -> list[str]:
    """The pre-training choices an SFT sweep's runs differ in: its varied ``init.*`` params but the step (the
    source seed is a seed, never varied)."""
    found = [p for p in s.varied if p.startswith(INIT) and p != INIT_STEP]
    return sorted(found, key=lambda p: (LESSON_AXES.index(p) if p in LESSON_AXES else len(LESSON_AXES), p))


def source_ids(frame: pd.DataFrame) -> pd.Series:
    """Each SFT run's source run id: tag ``mm1.init_from_run``, else param ``train.init_from.run``."""
    tagged = frame["init_from_run"] if "init_from_run" in frame else pd.Series(None, index=frame.index, dtype=object)
    if "train.init_from.run" in frame:
        tagged = tagged.where(tagged.notna(), frame["train.init_from.run"])
    return tagged


def _sft_scores(s: Sweep) -> list[str]:
    metrics = sft_metrics(s.frame.columns)
    if SFT_AVG not in metrics:
        raise DashboardError(f"its runs logged no {SFT_AVG}")
    return metrics


def _source_scores(s: Sweep, ids: pd.Series, steps: pd.Series) -> tuple[pd.Series, str, str]:
    """The source run's score per SFT run (NaN where not found), the metric (the smallest-k ``eval/avg/<k>shot``
    the sources logged) and a note for the caption. Sources may live in any experiment of the store. An SFT run
    that started from a checkpoint before its source's last step (``init.step`` < the source's
    ``train.max_steps``) gets the source's evaluation logged at that step, not its final one."""
    wanted = ids.dropna().unique()
    if not len(wanted):
        raise DashboardError("its runs name no source run (tag mm1.init_from_run or param train.init_from.run)")
    found = s.store.runs(wanted)
    if found.empty:
        raise DashboardError(f"none of its {len(wanted)} source run(s) (tag mm1.init_from_run) is in {s.store.uri}")
    shots = sorted((c for c in found.columns if shot_k(c) is not None and found[c].notna().any()), key=shot_k)
    if not shots:
        raise DashboardError("its source pre-training runs logged no eval/avg/<k>shot metric")
    metric, by_id = shots[0], found.set_index("run_id")
    scores = ids.map(by_id[metric])
    last = ids.map(pd.to_numeric(by_id["train.max_steps"], errors="coerce")) if "train.max_steps" in by_id else None
    earlier = steps.notna() & (steps < last) if last is not None else pd.Series(False, index=ids.index)
    histories: dict[str, pd.Series] = {}
    for i in ids.index[earlier]:
        if ids[i] not in histories:
            histories[ids[i]] = s.store.history(ids[i], metric).set_index("step")["value"]
        scores[i] = histories[ids[i]].get(int(steps[i]), float("nan"))
    missing = len(wanted) - len(found)
    note = f" {missing} of {len(wanted)} source run(s) not found in the store." if missing else ""
    if earlier.any():
        note += f" From a checkpoint before the source's last step: its {metric} logged at that step"
        note += " (none logged there: no pre-training bar)." if scores[earlier].isna().any() else "."
    return scores, metric, note


def _ordered(values: pd.Series) -> list:
    found = list(dict.fromkeys(values))
    known = [v for v in CONNECTORS if v in found]
    rest = [v for v in found if v not in known]
    try:
        rest = sorted(rest)
    except TypeError:  # mixed types: keep the table's order
        pass
    return known + rest


def lesson_table(s: Sweep, x: str, ctx: list[str]) -> tuple[pd.DataFrame, str, str]:
    """Seed-averaged SFT scores per (context, x) beside the source runs' score, each source run counted once:
    columns ``by``, ``runs``, ``pre-training <metric>`` (mean, std, n), then each SFT score (mean, std, n)."""
    metrics = _sft_scores(s)
    frame = s.frame.copy()
    frame[SOURCE] = source_ids(frame)
    steps = frame[INIT_STEP] if INIT_STEP in frame else pd.Series(float("nan"), index=frame.index)
    scores, metric, note = _source_scores(s, frame[SOURCE], pd.to_numeric(steps, errors="coerce"))
    pre = PRETRAIN.format(metric=metric)
    frame[pre] = scores
    by = [*ctx, x]
    table = seed_average(frame, by, metrics)
    sources = frame[frame[pre].notna()].drop_duplicates([*by, SOURCE])  # init.step is in ``by`` where it varies
    if sources.empty:
        raise DashboardError(f"no source run of its runs logged {metric}")
    before = seed_average(sources, by, [pre]).drop(columns="runs")
    table = table.merge(before, on=by, how="left")
    columns = [*by, "runs", pre, f"{pre} std", f"{pre} n"]
    return table[columns + [c for c in table.columns if c not in columns]], metric, note


def draw_sft_lesson(s: Sweep) -> Figure:
    """Per value of the first pre-training choice (x), the source runs' score and the SFT score side by side;
    the other varied params become panels."""
    x = lesson_axes(s)[0]
    ctx = s.context([x])
    table, metric, missing = lesson_table(s, x, ctx)
    pre = PRETRAIN.format(metric=metric)
    xs = _ordered(table[x])
    panels, note = _panels_of(table, ctx)
    series = [pre, SFT_AVG]
    cells = {(combo_label(r, ctx), r[x], m): _cell(r, m) for _, r in table.iterrows() for m in series}
    colours = [metric_colour(metric), SFT_COLOUR]
    fig, axes = charts.panel_grid(len(panels), max(4.2, 1.0 * len(xs) + 1.6), 3.6, max_cols=2)
    for ax, panel in zip(axes, panels, strict=True):
        charts.grouped_bars(
            ax, [value_label(x, v) for v in xs], series,
            cell=lambda g, t, p=panel: cells.get((p, xs[g], series[t])),
            colour=lambda g, t: colours[t], values=True,
        )  # fmt: skip
        ax.set_xlabel(f"{short_name(x.removeprefix(INIT))} of the pre-trained model")
        ax.set_ylabel(f"score (%): {metric_label(metric)} avg before SFT, SFT avg after" if ax is axes[0] else "")
        if ctx:
            ax.set_title(panel)
    labels = [f"pre-training ({metric_label(metric)} meta-average, {metric})", f"after SFT ({SFT_AVG})"]
    handles = [
        charts.Patch(facecolor=c, edgecolor="#333333", linewidth=0.5, label=label)
        for c, label in zip(colours, labels, strict=True)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    title = _suptitle(fig, "MM1 Sec. 5 - pre-training lesson after SFT", s)
    explain = (
        f"Pre-training bars: {metric} of the source runs (tag mm1.init_from_run), each source counted once per "
        f"checkpoint; "
        f"SFT bars: {SFT_AVG}; per-task SFT scores in the table.{missing}{note}"
    )
    return _finish(s, "sft-lesson", title, fig, table, _sft_scores(s), explain, unit="SFT bar")


def draw_sft_steps(s: Sweep) -> Figure:
    """Fig. 7c: each SFT score (panel: the average, the held-out SFT loss, then per task) against the pre-training
    step of the checkpoint; a line per combination of the other varied params."""
    scores = _sft_scores(s)
    # The held-out SFT loss too (a panel after the average): at toy scale it moves where the scores are noisy.
    metrics = [scores[0], *([SFT_LOSS] if SFT_LOSS in s.frame.columns else []), *scores[1:]]
    ctx = s.context([INIT_STEP])
    frame = s.frame.assign(**{INIT_STEP: pd.to_numeric(s.frame[INIT_STEP], errors="coerce")})
    table = seed_average(frame[frame[INIT_STEP].notna()], [*ctx, INIT_STEP], metrics)
    keys = _combos(table, ctx)
    note = ""
    if len(keys) > MAX_CURVES:
        note, keys = f" Showing {MAX_CURVES} of {len(keys)} lines.", keys[:MAX_CURVES]
    steps = sorted(table[INIT_STEP].unique())
    fig, axes = charts.panel_grid(len(metrics), 4.0, 3.4)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, key in enumerate(keys):
            line = table[[combo_label(r, ctx) == key for _, r in table.iterrows()]].sort_values(INIT_STEP)
            line = line[line[metric].notna()]
            if line.empty:
                continue
            ax.errorbar(
                line[INIT_STEP], line[metric], yerr=charts.yerr(line[f"{metric} std"], line[f"{metric} n"]),
                marker="o", markersize=5, linewidth=1.8, label=key,
                color=series_colour(i, len(keys)) if ctx else metric_colour(metric, metrics),
            )  # fmt: skip
        ax.set_xticks(steps, [f"{int(v)}" if float(v).is_integer() else f"{v:g}" for v in steps])
        ax.set_xlabel("pre-training step of the checkpoint")
        ax.set_ylabel(
            "SFT score (%)" if ax is axes[0] else "held-out loss (lower is better)" if metric == SFT_LOSS else ""
        )
        ax.set_title(metric_label(metric))
    if ctx:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(
            handles, labels, loc="outside lower center", ncols=min(len(labels), 3), frameon=False,
            title=" · ".join(short_name(p) for p in ctx),
        )  # fmt: skip
    title = _suptitle(fig, "Fig. 7c - SFT from checkpoints at different pre-training steps", s)
    return _finish(s, "sft-steps", title, fig, table, metrics, f"x: init.step, linear.{note}")
