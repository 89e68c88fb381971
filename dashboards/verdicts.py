"""Which of MM1's lessons an experiment's runs reproduce (``mm1 lessons``): per lesson and matching sweep, an effect
with a 95% confidence interval, judged against the paper's claim.

Runs are read exactly as the lesson plots read them (``dashboards.sweeps.prepare_sweeps``): per sweep, the latest
finished run of each trial, with the derived axes ``image resolution`` (``model.highres.resolution`` where
``model.highres.mode`` != none, else ``model.encoder.resolution``), ``caption share of image data`` (caption /
(caption + interleaved)) and ``image share`` ((caption + interleaved) / all). Only pre-training sweeps count.

Metrics, per run: S = the mean of the sweep's ``eval/avg/<k>shot`` over every k it logged (the k-shot
meta-average), M0 = ``eval/avg/0shot``, Mfew = ``eval/avg/<k>shot`` of the largest k > 0, TC = ``eval/textcore``.
A row whose runs lack its metric is ``inconclusive`` ("runs lack <metric>"). The model-axis lessons (encoder,
connector-*, highres, moe) get a second row on L = -``eval/loss`` (``held-out loss drop``, in nats; positive =
better): the loss of every held-out caption token given its image, far less noisy at toy scale than generated
answers scored on 48-64 items per task.

Statistics:

- A cell is one combination of the sweep's varied params (seeds, ``dashboards.runs.SEEDS``, are never varied
  params): n_i >= 1 runs, mean ybar_i.
- Noise: the pooled within-cell variance over every cell of the sweep that has the metric,
  s^2 = sum (n_i - 1) var_i / sum (n_i - 1), df = sum (n_i - 1).
- An effect is a linear contrast C = sum c_i ybar_i, SE = s sqrt(sum c_i^2 / n_i), 95% CI = C -/+ t(0.975, df) SE.
  df = 0 (no cell with two or more seeds): no interval, ``inconclusive`` ("1 seed per cell: no confidence interval").
- "Factor A at hi vs lo": only the combinations of the other varied params (those A is not derived from, plus any
  named match axis) present at both levels count (matched); c_i = +1 / (cells at hi), -1 / (cells at lo).
- A claim that an effect is > 0 is ``reproduced`` when the CI lies above 0, ``not reproduced`` when below, else
  ``inconclusive``. A lesson no sweep measures gives one row ``not run`` naming the sweep file that does.

The lessons, one row per matching sweep (sweeps named in the paper's order; MM1 figure or table in brackets):

1. ``encoder`` (Table 1; a sweep varying ``model.encoder.name`` and the resolution): "image resolution matters
   most, then encoder size". Effect = Δres - Δsize on S as one contrast: highest vs lowest resolution minus
   largest vs smallest encoder, sizes from ``mm1core.vision.ENCODERS`` (parameter count at an 8 x 8 patch grid,
   64 px for the toy encoders). The detail gives Δres and Δsize with their intervals.
2. ``connector-tokens`` (Fig. 4; a sweep varying ``model.connector.type``): "more image tokens help";
   Δ = S(max ``model.connector.num_tokens``) - S(min).
3. ``connector-resolution`` (Fig. 4): "higher image resolution helps"; Δ = S(max resolution) - S(min).
4. ``connector-type`` (Fig. 4): "the connector type matters little (less than tokens and resolution)". Effect =
   the largest gap between two connector types on S (the pair with the largest |difference|, as an absolute value,
   its interval flipped with it); m = the smaller magnitude |effect| of rows 2 and 3 (how much each matters).
   ``reproduced`` when the CI lies below m, ``not reproduced`` when above, else ``inconclusive`` (also when
   neither row 2 nor 3 has an estimate).
5. ``data-1-zero-shot`` (Fig. 5a; the caption share takes 2+ values, matched on the image share): "caption data
   lifts zero-shot performance"; Δ = M0(max caption share) - M0(min caption share).
6. ``data-1-few-shot`` (Fig. 5a): "interleaved data is instrumental for few-shot performance";
   Δ = Mfew(min caption share) - Mfew(max caption share).
7. ``data-1-text`` (Fig. 5a): "... and for text-only performance"; Δ = TC(min caption share) - TC(max).
8. ``data-2-few-shot`` (Fig. 5b; runs with ``data.mixture.text`` = 0 and > 0, matched on the caption share):
   "text-only data helps few-shot performance"; Δ = Mfew(text > 0, all such levels together) - Mfew(text = 0).
9. ``data-2-text`` (Fig. 5b): "... and text-only performance"; the same on TC.
10. ``data-3-ratio`` (Fig. 5c; the image share takes 3+ values, 1.0 among them, matched on the caption share):
    "a careful mix of image and text-only data gives the best multimodal performance (MM1: 91:9) while keeping
    text performance"; Δ = S(best image share < 1) - S(image share 1), the best share being the one with the
    largest gain. It is picked from the same data it is judged on, so the estimate is optimistic (a winner's
    curse). The detail names the ratio and gives TC at it minus TC at 100:0.
11. ``data-4-synthetic`` (Fig. 5d; ``data.synthetic_captions`` varies): "synthetic captions help few-shot
    performance"; Δ = Mfew(True) - Mfew(False).
12. ``lr-law`` (Fig. 6; ``train.lr`` and the decoder size vary): "the optimal peak LR falls with model size (MM1:
    slope -0.4214)"; effect = the slope a of ``dashboards.lrfit.fit_law`` with its bootstrap 95% interval, best LR
    per size by ``lr_metric``/``lr_mode`` (default: lowest ``eval/loss``). ``reproduced`` when the CI lies below 0,
    ``not reproduced`` when above.
13. ``highres`` (Fig. 7b; a sweep varying ``model.highres.mode`` or the resolution that varies neither the encoder
    nor the connector): "higher input resolution helps (sub-images reach it)"; Δ = S(max resolution) - S(min
    resolution), pooled over the high-res modes run at the max. The detail gives S per (mode, resolution).
14. ``moe`` (Sec. 3.5; some runs set ``model.decoder.moe.num_experts``, some not): "MoE beats the dense decoder at
    equal active parameters"; Δ = S(MoE) - S(dense).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from dashboards import DashboardError
from dashboards.figures.lessons import (
    CAPTION_SHARE,
    CONNECTOR,
    ENCODER,
    ENCODER_RES,
    IMAGE_SHARE,
    MIXTURE,
    MODE,
    RESOLUTION,
    Sweep,
    cap_int_label,
    image_text_label,
)
from dashboards.figures.style import TEXTCORE, shot_k
from dashboards.lrfit import PAPER_LAW, fit_law
from dashboards.sweeps import PRETRAIN, lr_applies, prepare_sweeps
from mm1core.vision import ENCODERS  # the registry of presets: torch-free

LR_METRIC, LR_MODE = "eval/loss", "min"  # at toy scale held-out loss ranks LRs far more reliably than few-shot
META = "k-shot meta-average"  # S: also the name of its per-run column
# L: the held-out caption loss, negated so that a positive effect is an improvement as for S (unit: nats). Few-shot
# scores of toy models are noisy (48-64 items per task, greedy decoding); the loss of every held-out caption token
# given its image moves far less from seed to seed, so the model-axis lessons are judged on both.
LOSS_DROP = "held-out loss drop"
HELD_OUT_LOSS = "eval/loss"
ZERO_SHOT = "eval/avg/0shot"
FEW_SHOT = "eval/avg/<k>shot (k > 0)"  # Mfew where a sweep logged no k > 0: a metric no run has
TOKENS, SYNTHETIC = "model.connector.num_tokens", "data.synthetic_captions"
EXPERTS, IS_MOE = "model.decoder.moe.num_experts", "MoE decoder"
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN = "reproduced", "not reproduced", "inconclusive", "not run"
ONE_SEED = "1 seed per cell: no confidence interval"
MEAN, COUNT = "cell mean", "cell n"
LR_LAW = "lr-law"
# What a derived axis follows from (params, or prefixes of them): never a matching axis of its own.
RESOLUTION_SOURCES = (ENCODER_RES, "model.highres")
MIXTURE_SOURCES = ("data.mixture",)
MOE_SOURCES = ("model.decoder.moe",)


@dataclass(frozen=True)
class Lesson:
    """One of MM1's claims: where the paper shows it, what a sweep must vary to test it, and the file that does."""

    name: str
    paper: str
    claim: str
    needs: str
    sweep_file: str


_CONNECTOR = ("model.connector.type", "sweeps/connector.yaml")
_CAPTION = ("the caption : interleaved ratio", "sweeps/data-mixture.yaml")
_TEXT = ("data.mixture.text (0 and > 0)", "sweeps/data-text.yaml")
LESSONS: dict[str, Lesson] = {
    lesson.name: lesson
    for lesson in (
        Lesson("encoder", "Table 1", "image resolution matters most, then encoder size",
               "model.encoder.name and the image resolution", "sweeps/encoder.yaml"),
        Lesson("connector-tokens", "Fig. 4", "more image tokens help", *_CONNECTOR),
        Lesson("connector-resolution", "Fig. 4", "higher image resolution helps", *_CONNECTOR),
        Lesson("connector-type", "Fig. 4", "the connector type matters little (less than tokens and resolution)",
               *_CONNECTOR),
        Lesson("data-1-zero-shot", "Fig. 5a", "caption data lifts zero-shot performance", *_CAPTION),
        Lesson("data-1-few-shot", "Fig. 5a", "interleaved data is instrumental for few-shot performance", *_CAPTION),
        Lesson("data-1-text", "Fig. 5a", "interleaved data is instrumental for text-only performance", *_CAPTION),
        Lesson("data-2-few-shot", "Fig. 5b", "text-only data helps few-shot performance", *_TEXT),
        Lesson("data-2-text", "Fig. 5b", "text-only data helps text-only performance", *_TEXT),
        Lesson("data-3-ratio", "Fig. 5c", "a careful mix of image and text-only data gives the best multimodal "
               "performance (MM1: 91:9) while keeping text performance",
               "the image : text-only ratio (3+ values, 100:0 among them)", "sweeps/data-text.yaml"),
        Lesson("data-4-synthetic", "Fig. 5d", "synthetic captions help few-shot performance", SYNTHETIC,
               "sweeps/data-synthetic.yaml"),
        Lesson(LR_LAW, "Fig. 6", f"the optimal peak LR falls with model size (MM1: slope {PAPER_LAW[0]})",
               "train.lr and the decoder size", "sweeps/lr-scaling.yaml"),
        Lesson("highres", "Fig. 7b", "higher input resolution helps (sub-images reach it)",
               "the image resolution or model.highres.mode (outside an encoder or connector sweep)",
               "sweeps/highres.yaml"),
        Lesson("moe", "Sec. 3.5", "MoE beats the dense decoder at equal active parameters",
               "model.decoder.moe (dense and MoE runs)", "sweeps/moe.yaml"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """One lesson judged on one sweep. ``effect`` is in percentage points of ``metric`` (a slope for the LR law),
    ``ci`` its 95% interval, ``seeds`` the fewest runs in a cell the effect uses, ``runs`` the runs it uses."""

    lesson: str
    paper: str
    claim: str
    sweep: str
    metric: str
    effect: float | None
    ci: tuple[float, float] | None
    seeds: int
    runs: int
    verdict: str
    detail: str

    @property
    def unit(self) -> str:
        return "slope" if self.lesson == LR_LAW else "nats" if self.metric == LOSS_DROP else "pts"

    @property
    def on(self) -> str:
        """What the effect is measured on, in a word: S, L (held-out loss drop), M0, Mfew, TC or the LR fit's metric."""
        if self.metric == META:
            return "S"
        if self.metric == LOSS_DROP:
            return "L"
        if self.metric == ZERO_SHOT:
            return "M0"
        if self.metric == TEXTCORE:
            return "TC"
        if self.lesson == LR_LAW or not self.metric:
            return self.metric or "-"
        return "Mfew" if shot_k(self.metric) else self.metric

    @property
    def effect_text(self) -> str:
        """``+4.00 pts [+2.04, +5.96]``; ``-`` without an effect."""
        if self.effect is None:
            return "-"
        spec = "+.2f" if self.unit == "pts" else "+.3f"
        interval = f"[{self.ci[0]:{spec}}, {self.ci[1]:{spec}}]" if self.ci else "(no CI)"
        return f"{self.effect:{spec}} {self.unit} {interval}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci": list(self.ci) if self.ci else None, "unit": self.unit}


# ------------------------------------------------------------------------------------------------ statistics
class Estimate(NamedTuple):
    """A contrast's point estimate, its 95% interval (None without one), the fewest runs in a cell it uses and the
    runs it uses."""

    effect: float
    ci: tuple[float, float] | None
    seeds: int
    runs: int

    def flipped(self) -> Estimate:
        ci = (-self.ci[1], -self.ci[0]) if self.ci else None
        return Estimate(-self.effect, ci, self.seeds, self.runs)

    def text(self, spec: str = "+.2f") -> str:
        interval = f" [{self.ci[0]:{spec}}, {self.ci[1]:{spec}}]" if self.ci else ""
        return f"{self.effect:{spec}}{interval}"


def pooled_variance(cells: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The within-cell variance pooled over ``cells`` (each the metric of its runs):
    s^2 = sum (n_i - 1) var_i / sum (n_i - 1) and df = sum (n_i - 1); (nan, 0) when no cell has two runs."""
    values = [np.asarray(cell, dtype=float) for cell in cells]
    df = sum(v.size - 1 for v in values if v.size > 1)
    if df == 0:
        return math.nan, 0
    return float(sum(((v - v.mean()) ** 2).sum() for v in values) / df), df


def contrast(means: Sequence[float], counts: Sequence[int], weights: Sequence[float], s2: float, df: int) -> Estimate:
    """C = sum c_i ybar_i with SE = s sqrt(sum c_i^2 / n_i) and the 95% interval C -/+ t(0.975, df) SE (none when
    df = 0)."""
    means, counts, weights = (np.asarray(x, dtype=float) for x in (means, counts, weights))
    effect = float(weights @ means)
    if abs(effect) <= 1e-12 * float(np.abs(weights) @ np.abs(means)):  # equal cells: rounding, not an effect
        effect = 0.0
    seeds, runs = int(counts.min()), int(counts.sum())
    if df == 0:
        return Estimate(effect, None, seeds, runs)
    half = float(stats.t.ppf(0.975, df)) * math.sqrt(s2 * float((weights**2 / counts).sum()))
    return Estimate(effect, (effect - half, effect + half), seeds, runs)


def decide(ci: tuple[float, float] | None, bound: float = 0.0, below: bool = False) -> str:
    """The verdict on "effect > bound" (``below``: "effect < bound") given the effect's 95% interval."""
    if ci is None:
        return INCONCLUSIVE
    low, high = ci
    if (high < bound) if below else (low > bound):
        return REPRODUCED
    if (low > bound) if below else (high < bound):
        return NOT_REPRODUCED
    return INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------- cells
class _Unmeasured(Exception):
    """A row that cannot be measured on this sweep; the message is its detail."""


@dataclass(frozen=True)
class Cells:
    """One metric of one sweep by cell: ``table`` holds per cell (indexed by its key) the params and derived axes
    of its first run, ``cell mean`` and ``cell n``; ``s2``/``df`` the pooled within-cell variance."""

    metric: str
    table: pd.DataFrame
    s2: float
    df: int
    varied: list[str]

    def weights(
        self, factor: str, high: Collection[Any], low: Collection[Any], sources: Sequence[str], match: Sequence[str]
    ) -> pd.Series:
        """The contrast "``factor`` in ``high`` vs in ``low``" over the matched cells (zero elsewhere). ``sources``:
        the params (or prefixes of them) ``factor`` is derived from; the other varied params and ``match`` must be
        equal on both sides."""
        others = [p for p in self.varied if not _derived_from(p, sources)] + list(match)
        other = pd.Series(_keys(self.table, others), index=self.table.index)
        hi, lo = self.table[factor].isin(list(high)), self.table[factor].isin(list(low))
        matched = set(other[hi]) & set(other[lo])
        hi, lo = hi & other.isin(matched), lo & other.isin(matched)
        if not matched:
            named = ", ".join(others) or "nothing"
            raise _Unmeasured(f"no combination of the other axes ({named}) was run at both levels of {factor}")
        return hi / hi.sum() - lo / lo.sum()

    def estimate(self, weights: pd.Series) -> Estimate:
        used = weights[weights != 0]
        table = self.table.loc[used.index]
        return contrast(table[MEAN], table[COUNT], used, self.s2, self.df)

    def levels(self, factor: str) -> list[Any]:
        return sorted(self.table[factor].dropna().unique())

    def extremes(self, factor: str) -> tuple[Any, Any]:
        """The smallest and the largest value of ``factor`` among the cells."""
        levels = self.levels(factor)
        if len(levels) < 2:
            raise _Unmeasured(f"{factor} takes one value among the runs with {self.metric}")
        return levels[0], levels[-1]


def cells_of(s: Sweep, metric: str) -> Cells:
    """The runs of ``s`` that have ``metric`` (or S, ``META``) grouped into cells of its varied params."""
    values = _values(s, metric)
    has = values.notna()
    runs, values = s.frame[has], values[has]
    key = pd.Series(_keys(runs, s.varied), index=runs.index)
    grouped = values.groupby(key, sort=False)
    first = runs[~key.duplicated()].set_axis(key[~key.duplicated()].to_numpy())
    table = first.assign(**{MEAN: grouped.mean(), COUNT: grouped.count()})
    s2, df = pooled_variance([group.to_numpy() for _, group in grouped])
    return Cells(metric, table, s2, df, list(s.varied))


def _values(s: Sweep, metric: str) -> pd.Series:
    """Each run's ``metric``; for S, the mean of the sweep's k-shot averages (NaN where a run lacks one)."""
    if metric == META:
        name, values = "eval/avg/<k>shot", s.frame[s.shots].astype(float).mean(axis=1, skipna=False)
    elif metric == LOSS_DROP:
        loss = s.frame.get(HELD_OUT_LOSS, pd.Series(np.nan, index=s.frame.index))
        name, values = HELD_OUT_LOSS, -pd.to_numeric(loss, errors="coerce")
    else:
        name, values = (
            metric,
            pd.to_numeric(s.frame.get(metric, pd.Series(np.nan, index=s.frame.index)), errors="coerce"),
        )
    if values.isna().all():
        raise _Unmeasured(f"runs lack {name}")
    return values


def _keys(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """One text key per row from ``columns`` (missing values included, as ``nan``/``None``)."""
    return ["\x1f".join(map(str, row)) for row in frame[list(columns)].itertuples(index=False)]


def _derived_from(param: str, sources: Sequence[str]) -> bool:
    return any(param == source or param.startswith(source + ".") for source in sources)


def _few_shot(s: Sweep) -> str:
    few = [m for m in s.shots if shot_k(m)]
    return few[-1] if few else FEW_SHOT


# ------------------------------------------------------------------------------------------------------- rows
class Measured(NamedTuple):
    """What a lesson rule found: the effect, a detail line, and the claim (``effect > bound``, or ``< bound`` when
    ``below``; no bound: nothing to compare with, inconclusive)."""

    estimate: Estimate
    detail: str = ""
    bound: float | None = 0.0
    below: bool = False
    no_ci: str = ONE_SEED


def _row(name: str, s: Sweep, metric: str, measure: Callable[[], Measured]) -> Verdict:
    lesson = LESSONS[name]
    row = partial(Verdict, name, lesson.paper, lesson.claim, s.tag or s.label, metric)
    try:
        found = measure()
    except (_Unmeasured, DashboardError) as exc:
        return row(None, None, 0, 0, INCONCLUSIVE, str(exc))
    estimate, detail = found.estimate, found.detail
    if estimate.ci is None:
        verdict, detail = INCONCLUSIVE, "; ".join(filter(None, [found.no_ci, detail]))
    elif found.bound is None:
        verdict = INCONCLUSIVE
    else:
        verdict = decide(estimate.ci, found.bound, found.below)
    return row(estimate.effect, estimate.ci, estimate.seeds, estimate.runs, verdict, detail)


def _compare(
    s: Sweep,
    metric: str,
    factor: str,
    sources: Sequence[str],
    match: Sequence[str] = (),
    reverse: bool = False,
    label: Callable[[Any], str] | None = None,
) -> Measured:
    """``metric`` at the largest value of ``factor`` minus at the smallest (``reverse``: smallest minus largest),
    matched on the other varied params and ``match``; ``label`` names a level in the detail."""
    cells = cells_of(s, metric)
    low, high = cells.extremes(factor)
    if reverse:
        low, high = high, low
    label = label or (lambda value: f"{factor} = {value}")
    return Measured(
        cells.estimate(cells.weights(factor, {high}, {low}, sources, match)), f"{label(high)} vs {label(low)}"
    )


MODEL_METRICS = (META, LOSS_DROP)  # the model-axis lessons: a row on S, then one on L


def _unit(metric: str) -> str:
    return "nats" if metric == LOSS_DROP else "pts"


def _spec(metric: str) -> str:
    return "+.3f" if metric == LOSS_DROP else "+.2f"


def _encoder(s: Sweep) -> list[Verdict]:
    return [row for metric in MODEL_METRICS for row in _encoder_on(s, metric)]


def _encoder_on(s: Sweep, metric: str) -> list[Verdict]:
    def measure() -> Measured:
        cells = cells_of(s, metric)
        low, high = cells.extremes(RESOLUTION)
        by_res = cells.weights(RESOLUTION, {high}, {low}, RESOLUTION_SOURCES, ())
        small, large = _smallest_and_largest_encoder(cells.levels(ENCODER))
        by_size = cells.weights(ENCODER, {large}, {small}, [ENCODER], ())
        d_res, d_size = cells.estimate(by_res), cells.estimate(by_size)
        unit = _unit(metric)
        detail = (
            f"Δres ({_px(low)} -> {_px(high)}) {d_res.text(_spec(metric))} {unit}, "
            f"Δsize ({small} -> {large}) {d_size.text(_spec(metric))} {unit}"
        )
        return Measured(cells.estimate(by_res.sub(by_size, fill_value=0)), detail)

    return [_row("encoder", s, metric, measure)]


def _smallest_and_largest_encoder(names: Sequence[str]) -> tuple[str, str]:
    """By parameter count at an 8 x 8 patch grid (the toys at 64 px; a resolution every preset's patch divides)."""
    sizes = {name: ENCODERS.get(name).params(8 * ENCODERS.get(name).patch) for name in names if name in ENCODERS}
    if len(sizes) < 2:
        unknown = ", ".join(str(n) for n in names if n not in sizes)
        raise _Unmeasured(f"encoder sizes unknown (not in the encoder registry: {unknown})")
    ordered = sorted(sizes, key=sizes.__getitem__)
    return ordered[0], ordered[-1]


def _connector(s: Sweep) -> list[Verdict]:
    return [row for metric in MODEL_METRICS for row in _connector_on(s, metric)]


def _connector_on(s: Sweep, metric: str) -> list[Verdict]:
    tokens = _row("connector-tokens", s, metric, lambda: _compare(s, metric, TOKENS, [TOKENS], label=_tokens))
    resolution = _row(
        "connector-resolution", s, metric, lambda: _compare(s, metric, RESOLUTION, RESOLUTION_SOURCES, label=_px)
    )
    effects = {"tokens": tokens.effect, "resolution": resolution.effect}
    bounds = {name: abs(effect) for name, effect in effects.items() if effect is not None}  # how much each matters
    return [tokens, resolution, _row("connector-type", s, metric, lambda: _largest_type_gap(s, bounds, metric))]


def _largest_type_gap(s: Sweep, bounds: dict[str, float], metric: str = META) -> Measured:
    """The pair of connector types furthest apart on ``metric``, as a positive gap, against the smaller of
    ``bounds``."""
    cells = cells_of(s, metric)
    gaps = []
    for a, b in combinations(cells.levels(CONNECTOR), 2):
        try:
            gaps.append((a, b, cells.estimate(cells.weights(CONNECTOR, {a}, {b}, [CONNECTOR], ()))))
        except _Unmeasured:
            continue
    if not gaps:
        raise _Unmeasured("no two connector types were run at the same tokens and resolution")
    a, b, gap = max(gaps, key=lambda found: abs(found[2].effect))
    if gap.effect < 0:
        a, b, gap = b, a, gap.flipped()
    pair = f"largest gap {a} - {b}"
    if not bounds:
        return Measured(gap, f"{pair}; no token or resolution effect to compare it with", bound=None)
    bound = min(bounds.values())
    spec = _spec(metric)
    against = ", ".join(f"|{name}| {value:{spec[1:]}}" for name, value in bounds.items())
    detail = f"{pair}; m = {bound:{spec[1:]}} {_unit(metric)} (the smaller of {against})"
    return Measured(gap, detail, bound=bound, below=True)


def _caption(s: Sweep) -> list[Verdict]:
    def share(metric: str, reverse: bool = False) -> Measured:
        return _compare(s, metric, CAPTION_SHARE, MIXTURE_SOURCES, [IMAGE_SHARE], reverse, _cap_int)

    few = _few_shot(s)
    return [
        _row("data-1-zero-shot", s, ZERO_SHOT, lambda: share(ZERO_SHOT)),
        _row("data-1-few-shot", s, few, lambda: share(few, reverse=True)),
        _row("data-1-text", s, TEXTCORE, lambda: share(TEXTCORE, reverse=True)),
    ]


def _text_only(s: Sweep) -> list[Verdict]:
    def with_text(metric: str) -> Measured:
        cells = cells_of(s, metric)
        levels = cells.levels(MIXTURE[2])
        weights = cells.weights(MIXTURE[2], [t for t in levels if t > 0], [0], MIXTURE_SOURCES, [CAPTION_SHARE])
        shares = ", ".join(f"{t:g}" for t in levels if t > 0)
        return Measured(cells.estimate(weights), f"text-only share {shares} vs 0")

    few = _few_shot(s)
    return [
        _row("data-2-few-shot", s, few, lambda: with_text(few)),
        _row("data-2-text", s, TEXTCORE, lambda: with_text(TEXTCORE)),
    ]


def _ratio(s: Sweep) -> list[Verdict]:
    def measure() -> Measured:
        cells = cells_of(s, META)
        found = []
        for share in (v for v in cells.levels(IMAGE_SHARE) if v < 1):
            try:
                found.append((share, _against_image_only(cells, share)))
            except _Unmeasured:
                continue
        if not found:
            raise _Unmeasured("no image : text ratio below 100:0 was run at the caption share of a 100:0 run")
        best, gain = max(found, key=lambda pair: pair[1].effect)
        return Measured(gain, f"best ratio {image_text_label(best)} vs 100:0; {_text_cost(s, best)}")

    return [_row("data-3-ratio", s, META, measure)]


def _against_image_only(cells: Cells, share: float) -> Estimate:
    """The metric at image share ``share`` minus at 1 (no text-only data), matched on the caption share."""
    return cells.estimate(cells.weights(IMAGE_SHARE, {share}, {1.0}, MIXTURE_SOURCES, [CAPTION_SHARE]))


def _text_cost(s: Sweep, share: float) -> str:
    try:
        estimate = _against_image_only(cells_of(s, TEXTCORE), share)
    except _Unmeasured as exc:
        return f"TextCore: {exc}"
    return f"TextCore {image_text_label(share)} - 100:0 {estimate.text()} pts"


def _synthetic(s: Sweep) -> list[Verdict]:
    few = _few_shot(s)
    label = {True: "with synthetic captions", False: "without"}.get
    return [_row("data-4-synthetic", s, few, lambda: _compare(s, few, SYNTHETIC, [SYNTHETIC], label=label))]


def _lr_law(s: Sweep, metric: str, mode: str) -> list[Verdict]:
    def measure() -> Measured:
        cells = cells_of(s, metric)  # for the seeds and runs it stands on; checks the metric is there
        result = fit_law(s.raw, metric, mode)
        ci = result["ci95"]["a"]
        counts = cells.table[COUNT]
        estimate = Estimate(result["a"], tuple(ci) if ci else None, int(counts.min()), int(counts.sum()))
        points = result["points"]
        detail = (
            f"a = {result['a']:+.4f}, b = {result['b']:+.4f}, R² = {result['r2']:.3f} over {len(points)} sizes, "
            f"best LR by {'lowest' if mode == 'min' else 'highest'} {metric}; paper a = {PAPER_LAW[0]}"
        )
        edges = sum(point["edge"] for point in points)
        detail += f"; {edges} optimum(s) at the grid's edge (widen it)" if edges else ""
        return Measured(estimate, detail, below=True, no_ci="no bootstrap replicate kept")

    return [_row(LR_LAW, s, metric, measure)]


def _highres(s: Sweep) -> list[Verdict]:
    return [row for metric in MODEL_METRICS for row in _highres_on(s, metric)]


def _highres_on(s: Sweep, metric: str) -> list[Verdict]:
    def measure() -> Measured:
        found = _compare(s, metric, RESOLUTION, RESOLUTION_SOURCES, label=_px)
        table = cells_of(s, metric).table
        by = [c for c in (MODE, RESOLUTION) if c in table]
        means = table.groupby(by, sort=True)[MEAN].mean()
        keys = [key if isinstance(key, tuple) else (key,) for key in means.index]
        spec = _spec(metric)[1:]
        per = ", ".join(f"{' @ '.join(map(_label, key))} {mean:{spec}}" for key, mean in zip(keys, means, strict=True))
        name = "S" if metric == META else "-loss"
        return found._replace(detail=f"{found.detail}; {name} per ({', '.join(by)}): {per}")

    return [_row("highres", s, metric, measure)]


def _label(value: Any) -> str:
    return _px(value) if isinstance(value, (int, float, np.number)) else str(value)


def _px(resolution: float) -> str:
    return f"{resolution:g} px"


def _tokens(count: float) -> str:
    return f"{count:g} tokens"


def _cap_int(share: float) -> str:
    return f"cap/int {cap_int_label(share)}"


def _moe(s: Sweep) -> list[Verdict]:
    labelled = replace(s, frame=s.frame.assign(**{IS_MOE: s.frame[EXPERTS].notna()}))
    name = {True: "MoE", False: "dense"}.get
    return [
        _row("moe", s, metric, lambda metric=metric: _compare(labelled, metric, IS_MOE, MOE_SOURCES, label=name))
        for metric in MODEL_METRICS
    ]


# ------------------------------------------------------------------------------------------- which sweeps
def _is_encoder_sweep(s: Sweep) -> bool:
    return ENCODER in s.varied and s.nunique(RESOLUTION) > 1


def _has_text_only_split(s: Sweep) -> bool:
    text = MIXTURE[2]
    return text in s.frame and (s.frame[text] == 0).any() and (s.frame[text] > 0).any()


def _has_ratio_axis(s: Sweep) -> bool:
    return s.nunique(IMAGE_SHARE) >= 3 and bool((s.frame[IMAGE_SHARE] == 1.0).any())


def _is_highres_sweep(s: Sweep) -> bool:
    axis = MODE in s.varied or s.nunique(RESOLUTION) > 1
    return axis and ENCODER not in s.varied and CONNECTOR not in s.varied


def _is_moe_sweep(s: Sweep) -> bool:
    return EXPERTS in s.frame and bool(s.frame[EXPERTS].notna().any() and s.frame[EXPERTS].isna().any())


Rule = tuple[Callable[[Sweep], bool], Callable[[Sweep], list[Verdict]]]


def _rules(lr_metric: str, lr_mode: str) -> list[Rule]:
    return [
        (_is_encoder_sweep, _encoder),
        (lambda s: CONNECTOR in s.varied, _connector),
        (lambda s: s.nunique(CAPTION_SHARE) > 1, _caption),
        (_has_text_only_split, _text_only),
        (_has_ratio_axis, _ratio),
        (lambda s: SYNTHETIC in s.varied, _synthetic),
        (lr_applies, partial(_lr_law, metric=lr_metric, mode=lr_mode)),
        (_is_highres_sweep, _highres),
        (_is_moe_sweep, _moe),
    ]


# ----------------------------------------------------------------------------------------------- entry points
def lesson_verdicts(sweeps: Sequence[Sweep], lr_metric: str = LR_METRIC, lr_mode: str = LR_MODE) -> list[Verdict]:
    """One row per lesson and pre-training sweep that measures it, in the order of ``LESSONS`` (see the module
    docstring); a lesson no sweep measures gets one ``not run`` row. Pure: reads the prepared sweeps only."""
    pretraining = [s for s in sweeps if s.stage == PRETRAIN]
    rows = [row for applies, rule in _rules(lr_metric, lr_mode) for s in pretraining if applies(s) for row in rule(s)]
    measured = {row.lesson for row in rows}
    rows += [_not_run(lesson) for name, lesson in LESSONS.items() if name not in measured]
    order = list(LESSONS)
    return sorted(rows, key=lambda row: order.index(row.lesson))


def _not_run(lesson: Lesson) -> Verdict:
    detail = f"no pre-training sweep here varies {lesson.needs}: run {lesson.sweep_file}"
    return Verdict(lesson.name, lesson.paper, lesson.claim, "", "", None, None, 0, 0, NOT_RUN, detail)


def experiment_verdicts(
    store: Any, experiment: str, sweep: str | None = None, lr_metric: str = LR_METRIC, lr_mode: str = LR_MODE
) -> list[Verdict]:
    """``lesson_verdicts`` of an experiment's finished runs (one sweep's when given) in a ``dashboards.runs.Store``.
    Raises DashboardError when there are none."""
    return lesson_verdicts(prepare_sweeps(store, experiment, sweep), lr_metric, lr_mode)


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    """A fixed-width table (lesson, paper, verdict, effect [95% CI], what it is measured on, sweep), then per row its
    claim and detail."""
    header = ("lesson", "paper", "verdict", "effect [95% CI]", "on", "sweep")
    cells = [(v.lesson, v.paper, v.verdict, v.effect_text, v.on, v.sweep or "-") for v in verdicts]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *cells]]  # fmt: skip
    lines.append("")
    for v in verdicts:
        where = f" (sweep {v.sweep}, {v.metric})" if v.sweep else ""
        lines.append(f"{v.lesson}{where}: {v.claim}. {v.detail}".rstrip())
    return "\n".join(lines)


def markdown_verdicts(verdicts: Sequence[Verdict]) -> str:
    """The verdicts as a Markdown table (lesson, paper, claim, on, effect [95% CI], seeds, verdict, detail), as the
    README's "Lessons" section shows them (``mm1 lessons --markdown``)."""
    lines = [
        "| lesson | paper | claim | on | effect [95% CI] | seeds | verdict | detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        cells = [v.lesson, v.paper, v.claim, v.on, v.effect_text, str(v.seeds or "-"), f"**{v.verdict}**", v.detail]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def write_verdicts(verdicts: Sequence[Verdict], out: Path) -> list[Path]:
    """``out/lessons.json`` (a list of ``Verdict.to_dict()``) and ``out/lessons.csv`` (the same, ``ci`` split into
    ``ci_low`` and ``ci_high``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [v.to_dict() for v in verdicts]
    json_file, csv_file = out / "lessons.json", out / "lessons.csv"
    json_file.write_text(json.dumps(rows, indent=1) + "\n")
    table = pd.DataFrame(rows, columns=[*(f.name for f in fields(Verdict)), "unit"])
    intervals = table.pop("ci")
    table["ci_low"] = [ci[0] if ci else None for ci in intervals]
    table["ci_high"] = [ci[1] if ci else None for ci in intervals]
    table.to_csv(csv_file, index=False)
    return [json_file, csv_file]
