"""The MM1 paper's lesson figures, regenerated from whatever finished trial runs an experiment holds (``mm1 plots``).

Figures are drawn per sweep: a sweep's runs define what is held constant. For each sweep, the params it varies
(``varied_params``) decide which figures apply; params a figure does not use as its axes become panels, groups or
lines of their own (never silently pooled). Seeds are averaged (mean, error bar = std across seeds, none for a
single run). Every figure is written as ``<figure>-<sweep>.png/.svg`` plus its data table ``<figure>-<sweep>.csv``,
listed in ``index.html`` and logged to the parent run of the sweep(s) it used (artifact path ``dashboards``).

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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboards import DashboardError
from dashboards.figures.lessons import (
    CAP_INT,
    CAPTION_SHARE,
    CONNECTOR,
    ENCODER,
    ENCODER_RES,
    IMAGE_SHARE,
    IMAGE_TEXT,
    LOSS,
    MIXTURE,
    MODE,
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
from dashboards.figures.style import shot_k, styled
from dashboards.runs import latest_per_trial, varied_params

__all__ = ["Figure", "Report", "make_report", "cap_int_label", "image_text_label"]


@dataclass
class Report:
    figures: list[Figure]
    skipped: list[tuple[str, str]]
    index: Path


# --------------------------------------------------------------------------------------------------- report
def make_report(
    store: Any, experiment: str, sweep: str | None, out: Path, lr_metric: str | None = None, lr_mode: str = "max"
) -> Report:
    """Draws every figure the runs allow into ``out``, writes ``out/index.html`` and logs both to the sweeps'
    parent runs. Raises DashboardError when the experiment (or sweep) has no finished trial runs.
    ``lr_metric``/``lr_mode`` pick Fig. 6's best LR per size (default: the largest-k shot average, highest)."""
    from dashboards.report import write_index

    frame = latest_per_trial(store.trials(experiment, sweep))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweeps = [_prepare(tag, group, experiment, out, store) for tag, group in frame.groupby("sweep", sort=True)]
    for s in sweeps:
        s.lr_metric, s.lr_mode = lr_metric, lr_mode
    figures: list[Figure] = []
    skipped: list[tuple[str, str]] = []
    for name, reason, applies, draw in KINDS:
        tried = [s for s in sweeps if applies(s)]
        if not tried:
            skipped.append((name, reason))
        for s in tried:
            try:
                with styled():
                    figures.append(draw(s))
            except DashboardError as exc:
                skipped.append((name, f"sweep {s.label}: {exc}"))
            except Exception as exc:  # noqa: BLE001 - one odd figure must not cost the others; MM1_DEBUG=1 raises
                if os.environ.get("MM1_DEBUG"):
                    raise
                message = str(exc).splitlines()[0] if str(exc) else ""
                skipped.append((name, f"sweep {s.label}: drawing failed: {type(exc).__name__}: {message}"))
    index = write_index(out, experiment, figures, skipped, store.uri)
    _log(store, experiment, figures, index)
    return Report(figures, skipped, index)


def _log(store: Any, experiment: str, figures: list[Figure], index: Path) -> None:
    parents = store.sweep_parents(experiment, {tag for f in figures for tag in f.sweeps})
    files: dict[str, list[Path]] = {}
    for figure in figures:
        for tag in figure.sweeps:
            if tag in parents:
                files.setdefault(parents[tag], []).extend(figure.files)
    for run_id, paths in files.items():
        store.log_outputs([run_id], [*paths, index], artifact_path="dashboards")


def _prepare(tag: str, group: pd.DataFrame, experiment: str, out: Path, store: Any) -> Sweep:
    raw = group.dropna(axis=1, how="all").reset_index(drop=True)
    frame = raw.copy()
    if ENCODER_RES in frame:
        mode = frame[MODE] if MODE in frame else pd.Series("none", index=frame.index)
        frame[MODE] = mode.fillna("none")
        highres = frame.get("model.highres.resolution", pd.Series(np.nan, index=frame.index))
        frame[RESOLUTION] = np.where(frame[MODE] != "none", highres, frame[ENCODER_RES])
        frame[RESOLUTION] = pd.to_numeric(frame[RESOLUTION], errors="coerce")
    if all(column in frame for column in MIXTURE):
        image = frame[MIXTURE[0]] + frame[MIXTURE[1]]
        frame[CAPTION_SHARE] = (frame[MIXTURE[0]] / image.where(image > 0)).round(6)
        frame[CAP_INT] = frame[CAPTION_SHARE].map(cap_int_label)
        frame[IMAGE_SHARE] = (image / (image + frame[MIXTURE[2]])).round(6)
        frame[IMAGE_TEXT] = frame[IMAGE_SHARE].map(image_text_label)
    shots = sorted((c for c in frame.columns if shot_k(c) is not None), key=shot_k)
    label = tag or experiment
    return Sweep(tag, label, raw, frame, varied_params(raw), out, store, shots)


def _lr_applies(s: Sweep) -> bool:
    size = "model.decoder.name" in s.varied or s.nunique("model.decoder.non_embedding_params") > 1
    return "train.lr" in s.varied and size


# name, reason when no sweep has the axis, does it apply to a sweep, draw
KINDS: list[tuple[str, str, Callable[[Sweep], bool], Callable[[Sweep], Figure]]] = [
    (
        "encoders",
        f"no sweep varies {ENCODER}, or {ENCODER_RES} without {CONNECTOR}",
        lambda s: ENCODER in s.varied or (ENCODER_RES in s.varied and CONNECTOR not in s.varied),
        draw_encoders,
    ),
    ("connectors", f"no sweep varies {CONNECTOR}", lambda s: CONNECTOR in s.varied, draw_connectors),
    (
        "data-mixture",
        "no sweep varies the caption/interleaved ratio (data.mixture.caption : data.mixture.interleaved)",
        lambda s: s.nunique(CAPTION_SHARE) > 1,
        draw_data_mixture,
    ),
    (
        "data-text-only",
        "no sweep has runs both with and without text-only data (data.mixture.text = 0 and > 0)",
        lambda s: MIXTURE[2] in s.frame and (s.frame[MIXTURE[2]] == 0).any() and (s.frame[MIXTURE[2]] > 0).any(),
        draw_text_only,
    ),
    (
        "data-image-text-ratio",
        "no sweep varies the image:text ratio ((caption + interleaved) : data.mixture.text) over 3+ values",
        lambda s: s.nunique(IMAGE_SHARE) >= 3,
        draw_image_text_ratio,
    ),
    (
        "data-synthetic",
        "no sweep varies data.synthetic_captions",
        lambda s: "data.synthetic_captions" in s.varied,
        draw_synthetic,
    ),
    (
        "lr-scaling",
        "no sweep varies both train.lr and the decoder size (model.decoder.name)",
        _lr_applies,
        draw_lr_scaling,
    ),
    (
        "resolution",
        "no sweep varies the image resolution (model.encoder.resolution or model.highres.resolution)",
        lambda s: s.nunique(RESOLUTION) > 1,
        draw_resolution,
    ),
    ("learning-curves", f"no run logged {LOSS}", lambda s: LOSS in s.frame, draw_learning_curves),
]
