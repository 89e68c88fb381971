"""Shared look of the lesson figures: fonts, colours per metric, short labels for params and metrics, saving.

Only matplotlib's object API (``matplotlib.figure.Figure`` on an Agg canvas); rcParams are set inside
``styled()`` (a ``rc_context``), never globally, so importing this module changes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 150
RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "errorbar.capsize": 3,
    "svg.hashsalt": "mm1-ablate",  # stable ids: re-running gives the same SVG text
}

# Okabe-Ito (colour-blind safe). One colour per metric, the same in every figure.
TEXTCORE_COLOUR = "#CC79A7"
SHOT_COLOURS = {0: "#0072B2", 1: "#56B4E9", 2: "#56B4E9", 4: "#E69F00", 8: "#009E73", 16: "#D55E00", 32: "#F0E442"}
SPARE_COLOURS = ["#D55E00", "#56B4E9", "#F0E442", "#000000", "#999999"]
CONNECTOR_COLOURS = {"avg-pool": "#0072B2", "attn-pool": "#E69F00", "c-abstractor": "#009E73"}
SERIES_COLOURS = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C564B", "#7F7F7F", "#BCBD22", "#000000",
]  # fmt: skip
HIGHRES_MARKERS = {"none": "o", "interpolate": "s", "subimage": "^"}
HIGHRES_LABELS = {"none": "native (no high-res)", "interpolate": "interpolated pos. emb.", "subimage": "sub-images"}

SHOT = re.compile(r"^eval/avg/(\d+)shot$")
TEXTCORE = "eval/textcore"
SFT_PREFIX, SFT_COLOUR = "eval/sft/", "#D55E00"  # after-SFT scores: vermillion, apart from every k-shot colour
INIT = "init."  # lineage params of an SFT run: its source pre-training run's values

SHORT_NAMES = {
    "model.connector.type": "connector",
    "model.connector.num_tokens": "image tokens",
    "model.encoder.name": "encoder",
    "model.encoder.resolution": "encoder res.",
    "model.highres.mode": "high-res mode",
    "model.highres.resolution": "high-res res.",
    "model.decoder.name": "decoder",
    "train.lr": "lr",
    "data.mixture.caption": "caption",
    "data.mixture.interleaved": "interleaved",
    "data.mixture.text": "text-only",
    "data.synthetic_captions": "synthetic captions",
    "init.step": "pre-training step",
    "train.init_from.sweep": "from sweep",
}
# Params whose value reads on its own (a name), and params shown with a unit.
BARE = {"model.connector.type", "model.encoder.name", "model.decoder.name"}
UNIT_FORMATS = {
    "model.connector.num_tokens": "{} tok",
    "model.encoder.resolution": "{} px",
    "model.highres.resolution": "{} px high-res",
    "image resolution": "{} px",
    "train.lr": "lr {}",
    "cap/int": "caption/interleaved {}",
    "image:text": "image:text {}",
    "init.step": "PT step {}",
}


@contextmanager
def styled() -> Iterator[None]:
    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out: Path, stem: str) -> list[Path]:
    """``out/stem.png`` (``DPI``) and ``out/stem.svg``."""
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{stem}.png", out / f"{stem}.svg"
    fig.savefig(png, dpi=DPI, facecolor="white")
    fig.savefig(svg, facecolor="white", metadata={"Date": None})
    return [png, svg]


def shot_k(metric: str) -> int | None:
    match = SHOT.match(metric)
    return int(match.group(1)) if match else None


def metric_label(metric: str) -> str:
    k = shot_k(metric)
    if k is not None:
        return f"{k}-shot"
    if metric == TEXTCORE:
        return "TextCore"
    if metric.startswith(SFT_PREFIX):
        return f"SFT {metric.removeprefix(SFT_PREFIX)}"
    return metric


def metric_colour(metric: str, order: Sequence[str] = ()) -> str:
    if metric == TEXTCORE:
        return TEXTCORE_COLOUR
    if metric == SFT_PREFIX + "avg":
        return SFT_COLOUR
    k = shot_k(metric)
    if k in SHOT_COLOURS:
        return SHOT_COLOURS[k]
    index = list(order).index(metric) if metric in order else 0
    return SPARE_COLOURS[index % len(SPARE_COLOURS)]


def connector_colour(name: str, order: Sequence[str]) -> str:
    if name in CONNECTOR_COLOURS:
        return CONNECTOR_COLOURS[name]
    return SERIES_COLOURS[(list(order).index(name) + 3) % len(SERIES_COLOURS)]


def series_colour(index: int, count: int) -> str:
    if count <= len(SERIES_COLOURS):
        return SERIES_COLOURS[index]
    if count <= 20:  # pairs of a dark and a light shade: neighbours (differing in the last param) share a hue
        return matplotlib.colormaps["tab20"](index)
    return matplotlib.colormaps["turbo"](0.05 + 0.9 * index / max(count - 1, 1))


def fmt_number(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def value_label(param: str, value: Any) -> str:
    """``16 tok``, ``64 px``, ``avg-pool``, ``lr 0.002``, ``synthetic captions on``, else ``name=value``. A lineage
    param (``init.model.connector.type``) reads as the source's own (``c-abstractor``)."""
    if param.startswith(INIT) and param not in UNIT_FORMATS and param not in SHORT_NAMES:
        return value_label(param.removeprefix(INIT), value)
    if param == "data.synthetic_captions":
        return f"synthetic captions {'on' if value else 'off'}"
    if param == "model.highres.mode":
        return {"none": "no high-res", "interpolate": "interpolated", "subimage": "sub-images"}.get(value, str(value))
    if param in BARE:
        return fmt_number(value)
    if param in UNIT_FORMATS and fmt_number(value) != "-":
        return UNIT_FORMATS[param].format(fmt_number(value))
    if param.startswith("data.mixture.") and isinstance(value, (int, float)):
        return f"{short_name(param)} {value:.0%}"
    return f"{short_name(param)}={fmt_number(value)}"


def short_name(param: str) -> str:
    if param.startswith(INIT) and param not in SHORT_NAMES:
        return f"source {short_name(param.removeprefix(INIT))}"
    return SHORT_NAMES.get(param, param.rsplit(".", 1)[-1])


def combo_label(row: Any, params: Sequence[str], sep: str = " · ") -> str:
    """The label of one combination of ``params`` (a table row or mapping)."""
    return sep.join(value_label(p, row[p]) for p in params) or "all runs"


def yerr(std: Any, n: Any) -> Any:
    """Error bar half-lengths: the std across seeds, none (NaN) where a single run gave the number."""
    import numpy as np

    std = np.asarray(std, dtype=float)
    return np.where(np.asarray(n, dtype=float) > 1, std, np.nan)
