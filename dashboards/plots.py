"""The MM1 paper's lesson figures, regenerated from whatever finished trial runs an experiment holds (``mm1 plots``).

Figures are drawn per sweep: a sweep's runs define what is held constant. For each sweep, the params it varies
(``varied_params``) decide which figures apply; params a figure does not use as its axes become panels, groups or
lines of their own (never silently pooled). Seeds are averaged (mean, error bar = std across seeds, none for a
single run). Every figure is written as ``<figure>-<sweep>.png/.svg`` plus its data table ``<figure>-<sweep>.csv``,
listed in ``index.html`` and logged to the parent run of the sweep(s) it used (artifact path ``dashboards``).
``index.html`` opens with the lesson verdicts of ``dashboards.verdicts``, computed from the same ``Sweep`` objects
(``dashboards.sweeps.prepare_sweeps``).

Axis rules (a figure not drawn for any sweep is reported once in ``Report.skipped``, naming the axis):

- ``encoders`` (Table 1): ``model.encoder.name`` varies, or ``model.encoder.resolution`` varies outside a connector
  sweep (there resolution is an axis of Fig. 4); a table encoder x resolution by k-shot average.
- ``connectors`` (Fig. 4): ``model.connector.type`` varies; bars per connector, x groups = the other varied params.
- ``data-mixture`` (Fig. 5a): the caption share of image data (caption / (caption + interleaved)) takes 2+ values.
- ``data-text-only`` (Fig. 5b): runs with ``data.mixture.text`` = 0 and > 0.
- ``data-image-text-ratio`` (Fig. 5c): the image : text-only ratio takes 3+ values.
- ``data-synthetic`` (Fig. 5d): ``data.synthetic_captions`` varies.
- ``lr-scaling`` (Fig. 6): ``train.lr`` and the decoder size vary; drawn by ``dashboards.lrfit``.
- ``resolution`` (Fig. 7b): the effective image resolution (``model.highres.resolution`` when
  ``model.highres.mode`` != none, else ``model.encoder.resolution``) takes 2+ values; a line per high-res mode.
- ``learning-curves``: every sweep with a ``train/loss`` history; a line per combination of the varied params.

Training stages (MM1 Sec. 5): a sweep's runs are split by ``train.stage`` (missing: ``pretrain``; a sweep mixing
stages gives one part per stage, the non-pretrain part labelled ``<sweep>-<stage>``). The figures above but
``learning-curves`` are drawn from pre-training runs only: SFT runs log ``eval/sft/*``, not k-shot averages, and an
SFT sweep that inherits varied connectors is reported as skipped for ``connectors``, naming the sweep. An SFT
sweep's axes are its lineage params: ``init.<path>`` (the source pre-training run's values of what its sweep
varied) and ``init.step``; the params that follow from them (``model.connector.type`` inherited from the source,
``train.init_from.step``) are not axes of their own, nor are source run ids, checkpoint paths and source seeds.

- ``sft-lesson`` (Sec. 5, "do pre-training lessons hold after SFT?"): an SFT sweep varies an ``init.*`` param
  other than ``init.step`` (and ``init.train.seed``); x = that param (the connector first where several vary,
  the others become panels), bars = the source runs' ``eval/avg/<k>shot`` of the smallest k (found by tag
  ``mm1.init_from_run`` anywhere in the store, each source counted once) beside the SFT runs' ``eval/sft/avg``;
  the table adds every ``eval/sft/<task>``.
- ``sft-steps`` (Fig. 7c): ``init.step`` takes 2+ values; ``eval/sft/avg`` and each ``eval/sft/<task>`` (a panel
  each) against the pre-training step, a line per combination of the other varied params.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from dashboards import DashboardError
from dashboards.figures.lessons import (
    CAPTION_SHARE,
    CONNECTOR,
    ENCODER,
    ENCODER_RES,
    IMAGE_SHARE,
    LOSS,
    MIXTURE,
    RESOLUTION,
    Figure,
    Sweep,
    cap_int_label,
    draw_connectors,
    draw_data_mixture,
    draw_encoders,
    draw_image_text_ratio,
    draw_learning_curves,
    draw_lr_scaling,
    draw_resolution,
    draw_synthetic,
    draw_text_only,
    image_text_label,
)
from dashboards.figures.sft import INIT_STEP, draw_sft_lesson, draw_sft_steps, lesson_axes
from dashboards.figures.style import styled
from dashboards.runs import SFT, varied_params
from dashboards.sweeps import PRETRAIN, lr_applies, prepare_sweeps
from dashboards.verdicts import LR_METRIC, LR_MODE, Verdict, lesson_verdicts

__all__ = ["Figure", "Report", "make_report", "prepare_sweeps", "cap_int_label", "image_text_label"]


@dataclass
class Report:
    figures: list[Figure]
    skipped: list[tuple[str, str]]
    index: Path
    lessons: list[Verdict] = field(default_factory=list)  # the lesson verdicts at the top of index.html


# --------------------------------------------------------------------------------------------------- report
def make_report(
    store: Any, experiment: str, sweep: str | None, out: Path, lr_metric: str | None = None, lr_mode: str = "max"
) -> Report:
    """Draws every figure the runs allow into ``out``, writes ``out/index.html`` (opening with the lesson verdicts)
    and logs both to the sweeps' parent runs. Raises DashboardError when the experiment (or sweep) has no finished
    trial runs. ``lr_metric``/``lr_mode`` pick Fig. 6's best LR per size (default: the largest-k shot average,
    highest)."""
    from dashboards.report import write_index

    out = Path(out)
    sweeps = prepare_sweeps(store, experiment, sweep, out)
    out.mkdir(parents=True, exist_ok=True)
    for s in sweeps:
        s.lr_metric, s.lr_mode = lr_metric, lr_mode
    figures: list[Figure] = []
    skipped: list[tuple[str, str]] = []
    for kind in KINDS:
        _draw_kind(kind, sweeps, figures, skipped)
    lessons = _lessons(sweeps, lr_metric, lr_mode, skipped)
    index = write_index(out, experiment, figures, skipped, store.uri, lessons=lessons)
    _log(store, experiment, figures, index)
    return Report(figures, skipped, index, lessons)


def _lessons(sweeps: list[Sweep], lr_metric: str | None, lr_mode: str, skipped: list[tuple[str, str]]) -> list[Verdict]:
    """The lesson verdicts for index.html. Fig. 6's law is judged by ``lr_metric``/``lr_mode`` when one was asked
    for, else by the verdicts' own default (held-out loss). A failure costs the table, never the figures."""
    try:
        return lesson_verdicts(sweeps, lr_metric or LR_METRIC, lr_mode if lr_metric else LR_MODE)
    except Exception as exc:  # noqa: BLE001 - as a figure's failure in _draw_kind; MM1_DEBUG=1 raises
        if os.environ.get("MM1_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        skipped.append(("lessons", f"verdicts failed: {type(exc).__name__}: {message}"))
        return []


def _draw_kind(kind: Kind, sweeps: list[Sweep], figures: list[Figure], skipped: list[tuple[str, str]]) -> None:
    """Draws ``kind`` for every sweep of its stage whose axes it applies to, appending to ``figures``/``skipped``."""
    tried = [s for s in sweeps if (kind.stages is None or s.stage in kind.stages) and kind.applies(s)]
    other = [s for s in sweeps if kind.stages == (PRETRAIN,) and s.stage != PRETRAIN and _would_apply(kind.applies, s)]
    skipped += [(kind.name, f"sweep {s.label}: {_not_pretraining(s)}") for s in other]
    if not tried and not other:
        skipped.append((kind.name, kind.reason))
    for s in tried:
        try:
            with styled():
                figures.append(kind.draw(s))
        except DashboardError as exc:
            skipped.append((kind.name, f"sweep {s.label}: {exc}"))
        except Exception as exc:  # noqa: BLE001 - one odd figure must not cost the others; MM1_DEBUG=1 raises
            if os.environ.get("MM1_DEBUG"):
                raise
            message = str(exc).splitlines()[0] if str(exc) else ""
            skipped.append((kind.name, f"sweep {s.label}: drawing failed: {type(exc).__name__}: {message}"))


def _log(store: Any, experiment: str, figures: list[Figure], index: Path) -> None:
    parents = store.sweep_parents(experiment, {tag for f in figures for tag in f.sweeps})
    files: dict[str, list[Path]] = {}
    for figure in figures:
        for tag in figure.sweeps:
            if tag in parents:
                files.setdefault(parents[tag], []).extend(figure.files)
    for run_id, paths in files.items():
        store.log_outputs([run_id], [*paths, index], artifact_path="dashboards")


def _would_apply(applies: Callable[[Sweep], bool], s: Sweep) -> bool:
    """Whether a pre-training figure's axis rule matches a sweep of another stage, its inherited params included."""
    try:
        return bool(applies(replace(s, varied=varied_params(s.raw))))
    except Exception:  # noqa: BLE001 - only decides what the skip note says
        return False


def _not_pretraining(s: Sweep) -> str:
    if s.sft:
        return (
            "an SFT sweep (train.stage = sft): its runs log eval/sft/*, not the pre-training k-shot metrics this "
            "figure plots (see sft-lesson, sft-steps)"
        )
    return f"a {s.stage} sweep (train.stage = {s.stage}): this figure is drawn from pre-training runs only"


class Kind(NamedTuple):
    name: str
    reason: str  # why it was not drawn when no sweep has its axis
    applies: Callable[[Sweep], bool]
    draw: Callable[[Sweep], Figure]
    stages: tuple[str, ...] | None = (PRETRAIN,)  # the train.stage of the sweeps it is drawn for (None: any)


SFT_ONLY = (SFT,)
KINDS: list[Kind] = [
    Kind(
        "encoders",
        f"no sweep varies {ENCODER}, or {ENCODER_RES} without {CONNECTOR}",
        lambda s: ENCODER in s.varied or (ENCODER_RES in s.varied and CONNECTOR not in s.varied),
        draw_encoders,
    ),
    Kind("connectors", f"no sweep varies {CONNECTOR}", lambda s: CONNECTOR in s.varied, draw_connectors),
    Kind(
        "data-mixture",
        "no sweep varies the caption/interleaved ratio (data.mixture.caption : data.mixture.interleaved)",
        lambda s: s.nunique(CAPTION_SHARE) > 1,
        draw_data_mixture,
    ),
    Kind(
        "data-text-only",
        "no sweep has runs both with and without text-only data (data.mixture.text = 0 and > 0)",
        lambda s: MIXTURE[2] in s.frame and (s.frame[MIXTURE[2]] == 0).any() and (s.frame[MIXTURE[2]] > 0).any(),
        draw_text_only,
    ),
    Kind(
        "data-image-text-ratio",
        "no sweep varies the image:text ratio ((caption + interleaved) : data.mixture.text) over 3+ values",
        lambda s: s.nunique(IMAGE_SHARE) >= 3,
        draw_image_text_ratio,
    ),
    Kind(
        "data-synthetic",
        "no sweep varies data.synthetic_captions",
        lambda s: "data.synthetic_captions" in s.varied,
        draw_synthetic,
    ),
    Kind(
        "lr-scaling",
        "no sweep varies both train.lr and the decoder size (model.decoder.name)",
        lr_applies,
        draw_lr_scaling,
    ),
    Kind(
        "resolution",
        "no sweep varies the image resolution (model.encoder.resolution or model.highres.resolution)",
        lambda s: s.nunique(RESOLUTION) > 1,
        draw_resolution,
    ),
    Kind("learning-curves", f"no run logged {LOSS}", lambda s: LOSS in s.frame, draw_learning_curves, None),
    Kind(
        "sft-lesson",
        "no SFT sweep (runs with train.stage = sft) varies a pre-training choice (an init.* param other than "
        "init.step)",
        lambda s: bool(lesson_axes(s)),
        draw_sft_lesson,
        SFT_ONLY,
    ),
    Kind(
        "sft-steps",
        f"no SFT sweep (runs with train.stage = sft) varies {INIT_STEP} (the pre-training step of its checkpoints)",
        lambda s: s.nunique(INIT_STEP) > 1,
        draw_sft_steps,
        SFT_ONLY,
    ),
]
