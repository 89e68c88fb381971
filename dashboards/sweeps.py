"""An experiment's finished trial runs as one ``Sweep`` per sweep and training stage: what the lesson figures
(``dashboards.plots``) and the lesson verdicts (``dashboards.verdicts``) both read, so the two never disagree on
which runs a sweep holds or what it varies.

Per sweep: the latest finished run of each trial, the derived axes (``image resolution``: ``model.highres.resolution``
where ``model.highres.mode`` != none, else ``model.encoder.resolution``; the caption share of image data and the
image share) and the varied params. A sweep mixing training stages gives one ``Sweep`` per stage, the non-pretrain
part labelled ``<sweep>-<stage>``; an SFT sweep's axes are its lineage params (``init.*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboards.figures.lessons import (
    CAP_INT,
    CAPTION_SHARE,
    ENCODER_RES,
    IMAGE_SHARE,
    IMAGE_TEXT,
    MIXTURE,
    MODE,
    RESOLUTION,
    Sweep,
    cap_int_label,
    image_text_label,
)
from dashboards.figures.style import INIT, shot_k
from dashboards.runs import STAGE, latest_per_trial, stages, varied_params

PRETRAIN = "pretrain"


def prepare_sweeps(store: Any, experiment: str, sweep: str | None = None, out: Path = Path(".")) -> list[Sweep]:
    """The experiment's finished trial runs (the latest per trial key; one sweep's when ``sweep`` is given) as one
    ``Sweep`` per sweep tag and training stage, with the derived axes (resolution, caption and image shares) and
    varied params every figure and lesson verdict reads. ``out`` is where their figures go; nothing is written.
    Raises DashboardError when there are no such runs."""
    frame = latest_per_trial(store.trials(experiment, sweep))
    groups = frame.groupby("sweep", sort=True)
    return [s for tag, group in groups for s in _by_stage(tag, group, experiment, Path(out), store)]


def _by_stage(tag: str, group: pd.DataFrame, experiment: str, out: Path, store: Any) -> list[Sweep]:
    """One ``Sweep`` per training stage among the sweep's runs (usually one)."""
    parts = list(group.groupby(stages(group), sort=True))
    return [_prepare(tag, part, experiment, out, store, stage, len(parts) > 1) for stage, part in parts]


def _lineage_axes(raw: pd.DataFrame, varied: list[str]) -> list[str]:
    """An SFT sweep's axes: its varied params less those that follow from its lineage params (``init.*``), such
    as ``model.connector.type`` inherited from the source or ``train.init_from.step`` resolved into ``init.step``:
    the same axis twice, kept once as ``init.*``."""
    lineage = [p for p in varied if p.startswith(INIT)]
    if not lineage:
        return varied
    key = raw[lineage].astype(str).agg("\x1f".join, axis=1)
    kept = []
    for param in varied:
        values = raw[param].astype(str)
        if param in lineage or values.groupby(key).nunique().max() > 1:
            kept.append(param)
    return kept


def _prepare(
    tag: str, group: pd.DataFrame, experiment: str, out: Path, store: Any, stage: str = PRETRAIN, split: bool = False
) -> Sweep:
    raw = group.dropna(axis=1, how="all").reset_index(drop=True)
    if STAGE in raw:  # runs logged before train.stage existed count as pretrain: not an axis
        raw[STAGE] = stage
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
    label = (tag or experiment) + (f"-{stage}" if split and stage != PRETRAIN else "")
    varied = varied_params(raw)
    if stage != PRETRAIN:
        varied = _lineage_axes(raw, varied)
    return Sweep(tag, label, raw, frame, varied, out, store, shots, stage=stage)


def lr_applies(s: Sweep) -> bool:
    size = "model.decoder.name" in s.varied or s.nunique("model.decoder.non_embedding_params") > 1
    return "train.lr" in s.varied and size
