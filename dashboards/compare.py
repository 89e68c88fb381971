"""``mm1 compare``: finished trials pivoted by one or more params, seeds averaged (mean, std, n).

The table pandas makes is the product: one row per combination of the ``--by`` values, per metric its mean
over the runs in that row (seeds, and any axis not in ``--by``, pooled), the sample std and the run count.
SFT runs (``train.stage`` = ``sft``, MM1 Sec. 5) are compared on their SFT scores by default, and their lineage
params (``init.model.connector.type``, ``init.step``) are ordinary ``--by`` keys.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import pandas as pd

from dashboards import DashboardError
from dashboards.runs import SFT, metric_columns, param_columns, seed_average, sft_metrics, stages

_SHOTS = re.compile(r"^eval/avg/(\d+)shot$")


def default_metrics(frame: pd.DataFrame) -> list[str]:
    """MM1's headline numbers: for pre-training runs the k-shot meta-averages (by k) and TextCore, for SFT runs
    ``eval/sft/avg`` and ``eval/sft/<task>`` (both where the runs mix stages), then the final training loss."""
    present = set(metric_columns(frame))
    stage = stages(frame)
    pretrain, sft = [], []
    if (stage != SFT).any():
        pretrain = sorted((m for m in present if _SHOTS.match(m)), key=lambda m: int(_SHOTS.match(m).group(1)))
        pretrain += [m for m in ("eval/textcore",) if m in present]
    if (stage == SFT).any():
        sft = sft_metrics(present)
    return pretrain + sft + [m for m in ("train/loss",) if m in present]


def compare_table(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Rows: the ``by`` values; columns: ``by``, ``runs``, then per metric ``<metric>`` and ``<metric> std``."""
    if not by:
        raise DashboardError("--by: name at least one param (e.g. model.connector.type)")
    params = set(param_columns(frame))
    for key in by:
        if key not in params:
            raise DashboardError(f"--by: no param {key!r} in these runs ({_nearby(key, sorted(params))})")
    if not metrics:
        raise DashboardError("--metric: these runs logged no eval/avg/<k>shot, eval/textcore, eval/sft/* or train/loss")
    logged = set(metric_columns(frame))
    for metric in metrics:
        if metric not in logged:
            raise DashboardError(f"--metric: no run logged {metric!r} ({_nearby(metric, sorted(logged))})")
    averaged = seed_average(frame, by, metrics)
    columns = [*by, "runs"] + [c for m in metrics for c in (m, f"{m} std")]
    return averaged[columns]


def format_compare(table: pd.DataFrame) -> str:
    """The table as text: a metric and its std shown together as ``mean ± std`` (``mean`` alone for one run)."""
    shown = table[[c for c in table.columns if not c.endswith(" std")]].copy()
    for column in shown.columns:
        std_column = f"{column} std"
        if std_column in table.columns:
            shown[column] = [_mean_std(m, s) for m, s in zip(table[column], table[std_column], strict=True)]
    return shown.to_string(index=False)


def _mean_std(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def _nearby(name: str, known: list[str]) -> str:
    """A hint: the closest known names, else the first few."""
    close = difflib.get_close_matches(name, known, n=4, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(close) + "?"
    return "known: " + ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
