"""MM1's learning-rate scaling law (MM1, Sec. 3.4 and Fig. 6), fitted to an LR sweep over decoder sizes.

The paper grid-searches the peak LR at a few small sizes (9M, 85M, 302M, 1.2B non-embedding params), keeps the
best LR per size by the 8-shot average, and fits a line in log space: ``eta = exp(-0.4214 ln N - 0.5535)``, with
weight decay ``0.1 * eta``. We do the same, with two refinements:

* the optimum per size is not snapped to the grid: when the best grid LR is interior, a parabola in ``ln lr``
  through it and its two neighbours gives the vertex (an LR grid is coarse, typically a factor 2-3 per step);
* 95% intervals come from a two-level bootstrap: sizes are resampled with replacement (pairs bootstrap, the
  uncertainty of the regression) and, within each size, the runs of every (N, lr) cell are resampled (seed noise,
  the uncertainty of each optimum). Replicates with fewer than two distinct sizes are dropped.

``fit_law`` returns a JSON object (written to ``fit.json`` by ``mm1 fit-lr``); ``draw_law`` draws Fig. 6 from it.
The bootstrap is seeded, so ``draw_law`` recomputes the same replicates for the band instead of carrying them in
the JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboards import DashboardError

N_PARAM = "model.decoder.non_embedding_params"
LR_PARAM = "train.lr"
PAPER_LAW = (-0.4214, -0.5535)
WEIGHT_DECAY_PER_LR = 0.1  # MM1: lambda = 0.1 * eta worked for all sizes
MODES = ("max", "min")
SHOWN_METRICS = 10


@dataclass(frozen=True)
class _Size:
    """One model size's LR grid: ascending ``lrs`` and, per LR, the metric of each of its runs (seeds)."""

    n: float
    lrs: np.ndarray
    runs: tuple[np.ndarray, ...]

    @property
    def log_lrs(self) -> np.ndarray:
        return np.log(self.lrs)

    def means(self) -> np.ndarray:
        return np.array([values.mean() for values in self.runs])


@dataclass(frozen=True)
class _Fit:
    sizes: list[_Size]
    optima: list[tuple[float, float, bool]]  # (lr, metric, edge) per size
    a: float
    b: float
    r2: float
    a_boot: np.ndarray
    b_boot: np.ndarray


# ------------------------------------------------------------------------------------------ optimum per size
def optimal_lr(lrs: Sequence[float], values: Sequence[float], mode: str) -> tuple[float, float, bool]:
    """The best LR of one grid and the metric there, refined between grid points; ``edge`` when it is the grid's
    smallest or largest LR (or the only one), which then comes back unrefined. ``values`` are seed means."""
    _check_mode(mode)
    lrs_array, values_array = np.asarray(lrs, dtype=float), np.asarray(values, dtype=float)
    if lrs_array.ndim != 1 or lrs_array.shape != values_array.shape or lrs_array.size == 0:
        raise ValueError(f"optimal_lr: need equally many LRs and values, got {lrs_array.shape}, {values_array.shape}")
    if not (np.all(lrs_array > 0) and np.all(np.isfinite(lrs_array)) and np.all(np.isfinite(values_array))):
        raise ValueError("optimal_lr: LRs must be finite and > 0, values finite")
    order = np.argsort(lrs_array, kind="stable")
    grid = lrs_array[order]
    log_grid = np.log(grid)
    log_lr, metric, edge = _optima(log_grid, values_array[order][None, :], mode)
    # An unrefined optimum is returned as the grid LR itself (as logged), not as exp(log(lr)) one ulp away.
    on_grid = np.flatnonzero(log_grid == log_lr[0])
    lr = grid[on_grid[0]] if on_grid.size else np.exp(log_lr[0])
    return float(lr), float(metric[0]), bool(edge[0])


def _optima(log_lrs: np.ndarray, means: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``optimal_lr`` for many rows at once (one per bootstrap replicate): ``means`` is (rows, len(log_lrs)).
    Returns the optimal ln(lr), the metric there and the edge flag, per row."""
    rows = np.arange(means.shape[0])
    best = (means if mode == "max" else -means).argmax(axis=1)
    edge = (best == 0) | (best == log_lrs.size - 1)
    log_lr, metric = log_lrs[best].copy(), means[rows, best].copy()
    inner = np.flatnonzero(~edge)
    if inner.size:
        log_lr[inner], metric[inner] = _vertex(log_lrs, means[inner], best[inner], mode)
    return log_lr, metric, edge


def _vertex(log_lrs: np.ndarray, means: np.ndarray, best: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertex of the parabola through the best interior point and its neighbours (Newton's divided differences,
    so uneven grids work). Where the curvature has the wrong sign (a flat triple) the grid point stays."""
    rows = np.arange(means.shape[0])
    x0, x1, x2 = log_lrs[best - 1], log_lrs[best], log_lrs[best + 1]
    y0, y1, y2 = means[rows, best - 1], means[rows, best], means[rows, best + 1]
    slope01, slope12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    curvature = (slope12 - slope01) / (x2 - x0)
    curved = curvature < 0 if mode == "max" else curvature > 0
    safe = np.where(curved, curvature, 1.0)
    # The clip only guards against rounding: a best middle point puts the vertex between its neighbours.
    x = np.clip((x0 + x1) / 2 - slope01 / (2 * safe), x0, x2)
    y = y0 + slope01 * (x - x0) + curvature * (x - x0) * (x - x1)
    return np.where(curved, x, x1), np.where(curved, y, y1)


# ------------------------------------------------------------------------------------------------- the fit
def fit_law(
    frame: pd.DataFrame,
    metric: str,
    mode: str,
    predict: Sequence[float | str] = (),
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The law ``ln(lr_opt) = a ln(N) + b`` over the finished trials in ``frame`` (see the module docstring), as a
    JSON-ready dict: a, b, r2, ci95, points, predict, metric, mode, bootstrap (replicates kept), paper. ``predict``
    holds a prediction per size of ``predict``, keyed by the size as given (a string as written, ``30000000000``;
    a number as ``:g`` writes it, ``3e+10``)."""
    fit = _fit(frame, metric, mode, n_boot, seed)
    points = [
        {"n": int(round(size.n)), "lr": lr, "metric": value, "edge": edge}
        for size, (lr, value, edge) in zip(fit.sizes, fit.optima, strict=True)
    ]
    return {
        "a": fit.a,
        "b": fit.b,
        "r2": fit.r2,
        "ci95": {"a": _interval(fit.a_boot), "b": _interval(fit.b_boot)},
        "points": points,
        "predict": {n if isinstance(n, str) else f"{n:g}": _prediction(fit, float(n)) for n in predict},
        "metric": metric,
        "mode": mode,
        "bootstrap": int(fit.a_boot.size),
        "paper": {"a": PAPER_LAW[0], "b": PAPER_LAW[1]},
    }


def _fit(frame: pd.DataFrame, metric: str, mode: str, n_boot: int, seed: int) -> _Fit:
    _check_mode(mode)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    sizes = _sizes(frame, metric)
    optima = [optimal_lr(size.lrs, size.means(), mode) for size in sizes]
    log_n = np.log([size.n for size in sizes])
    log_lr = np.log([lr for lr, _, _ in optima])
    a, b = (float(v[0]) for v in _line(log_n[None, :], log_lr[None, :]))
    a_boot, b_boot = _bootstrap(sizes, mode, n_boot, np.random.default_rng(seed))
    return _Fit(sizes, optima, a, b, _r2(log_n, log_lr, a, b), a_boot, b_boot)


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of each row of ``y`` on the same row of ``x`` (rows with spread in x)."""
    x_mean, y_mean = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    slope = ((x - x_mean) * (y - y_mean)).sum(axis=1) / ((x - x_mean) ** 2).sum(axis=1)
    return slope, y_mean[:, 0] - slope * x_mean[:, 0]


def _r2(x: np.ndarray, y: np.ndarray, a: float, b: float) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    residual = float(((y - (a * x + b)) ** 2).sum())
    # All optima at one LR: the flat line fits them exactly, and 0/0 would be NaN.
    return 1.0 if total <= 1e-24 else 1.0 - residual / total


def _bootstrap(sizes: list[_Size], mode: str, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of each kept replicate. Every drawn slot of a size gets its own seed resampling, so a size drawn
    twice in one replicate contributes two independent optima, as in a two-stage bootstrap."""
    picks = rng.integers(0, len(sizes), size=(n_boot, len(sizes)))
    log_lr = np.empty(picks.shape)
    for index, size in enumerate(sizes):
        slots = picks == index
        means = _resampled_means(size, int(slots.sum()), rng)
        log_lr[slots] = _optima(size.log_lrs, means, mode)[0]
    keep = (picks != picks[:, :1]).any(axis=1)  # two distinct sizes at least, else no slope
    log_n = np.log([size.n for size in sizes])[picks[keep]]
    return _line(log_n, log_lr[keep]) if keep.any() else (np.empty(0), np.empty(0))


def _resampled_means(size: _Size, rows: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, LRs): each cell's runs drawn with replacement and averaged; a one-run cell stays as it is."""
    columns = []
    for values in size.runs:
        if values.size == 1:
            columns.append(np.full(rows, values[0]))
        else:
            columns.append(values[rng.integers(0, values.size, size=(rows, values.size))].mean(axis=1))
    return np.stack(columns, axis=1)


def _interval(samples: np.ndarray) -> list[float] | None:
    """Percentile 95% interval; None when no replicate was kept (n_boot tiny and only two sizes)."""
    if samples.size == 0:
        return None
    low, high = np.percentile(samples, [2.5, 97.5])
    return [float(low), float(high)]


def _prediction(fit: _Fit, n: float) -> dict[str, Any]:
    lr = math.exp(fit.a * math.log(n) + fit.b)
    ci = _interval(np.exp(fit.a_boot * math.log(n) + fit.b_boot))
    return {"lr": lr, "weight_decay": WEIGHT_DECAY_PER_LR * lr, "ci95": ci}


# -------------------------------------------------------------------------------------------- input checks
def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise DashboardError(f"--mode: must be 'max' or 'min', got {mode!r}")


def _sizes(frame: pd.DataFrame, metric: str) -> list[_Size]:
    """The usable runs grouped per size and LR, with a one-line DashboardError for each way they can fall short."""
    sizes = [_size(n, group) for n, group in _usable_runs(frame, metric).groupby("n", sort=True)]
    if len(sizes) < 2:
        found = ", ".join(f"{size.n:.0f}" for size in sizes)
        raise DashboardError(
            f"--experiment/--sweep: need runs at two or more model sizes ({N_PARAM}); found {len(sizes)}: {found}"
        )
    return sizes


def _size(n: float, group: pd.DataFrame) -> _Size:
    cells = list(group.groupby("lr", sort=True)["value"])
    lrs = np.array([lr for lr, _ in cells], dtype=float)
    return _Size(float(n), lrs, tuple(values.to_numpy(dtype=float) for _, values in cells))


def _usable_runs(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Columns ``n``, ``lr``, ``value`` of the runs where all three are finite (and N, lr > 0)."""
    value = pd.to_numeric(frame[metric], errors="coerce") if metric in frame.columns else None
    if value is None or not np.isfinite(value).any():
        raise DashboardError(f"--metric: no finished run logged {metric!r} (metrics seen: {_metrics_seen(frame)})")
    for param, role in ((N_PARAM, "model size"), (LR_PARAM, "peak LR")):
        if param not in frame.columns:
            raise DashboardError(
                f"--experiment/--sweep: these runs have no {param!r} param ({role}); fit-lr needs an LR sweep "
                f"({LR_PARAM}) at several model sizes ({N_PARAM})"
            )
    numeric = {"n": frame[N_PARAM], "lr": frame[LR_PARAM], "value": value}
    runs = pd.DataFrame({name: pd.to_numeric(column, errors="coerce") for name, column in numeric.items()})
    runs = runs[np.isfinite(runs).all(axis=1) & (runs["n"] > 0) & (runs["lr"] > 0)]
    if runs.empty:
        raise DashboardError(f"--metric: no run has {metric!r} together with numeric {LR_PARAM} and {N_PARAM} params")
    return runs


def _metrics_seen(frame: pd.DataFrame) -> str:
    logged = [c for c in frame.columns if "/" in c and frame[c].notna().any()]
    shown = sorted(c for c in logged if c.startswith("eval/")) or sorted(logged)
    more = ", ..." if len(shown) > SHOWN_METRICS else ""
    return (", ".join(shown[:SHOWN_METRICS]) + more) or "none"


# ----------------------------------------------------------------------------------------------- the figure
def draw_law(
    result: dict[str, Any],
    frame: pd.DataFrame,
    metric: str,
    out_dir: Path,
    stem: str = "lr_scaling",
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> list[Path]:
    """Fig. 6 of MM1 for ``result`` (from ``fit_law`` on the same ``frame`` and ``metric``): ``<stem>.png`` and
    ``<stem>.svg`` in ``out_dir``. The band needs the bootstrap replicates, which the JSON does not carry: they
    are recomputed, identically, from the same seed, so pass the ``n_boot`` and ``seed`` given to ``fit_law``."""
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend state

    fit = _fit(frame, metric, result["mode"], n_boot, seed)
    if not (math.isclose(fit.a, result["a"], rel_tol=1e-9) and math.isclose(fit.b, result["b"], rel_tol=1e-9)):
        raise ValueError("draw_law: result was not fitted from this frame and metric")
    figure = Figure(figsize=(9, 6.5), layout="constrained")
    axes = figure.add_subplot()
    _draw_grid(figure, axes, fit, metric, result["mode"])
    _draw_lines(axes, fit, result)
    _draw_optima(axes, result)
    _draw_predictions(axes, result)
    axes.set(xscale="log", yscale="log", title="LR scaling law (MM1 Fig. 6)")
    axes.set(xlabel="non-embedding parameters N", ylabel="peak learning rate η")
    axes.grid(True, which="major", alpha=0.3)
    axes.grid(True, which="minor", alpha=0.08)
    # Below the axes: inside, it would hide grid runs wherever it went (they fill the N x lr rectangle).
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8, frameon=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    figure.savefig(paths[0], dpi=150)
    figure.savefig(paths[1])
    return paths


def _draw_grid(figure: Any, axes: Any, fit: _Fit, metric: str, mode: str) -> None:
    """Every (N, lr) cell tried, faint, coloured by its seed-mean metric; the brightest colour is always best."""
    n = np.concatenate([np.full(size.log_lrs.size, size.n) for size in fit.sizes])
    lr = np.concatenate([size.lrs for size in fit.sizes])
    value = np.concatenate([size.means() for size in fit.sizes])
    cmap = "viridis" if mode == "max" else "viridis_r"
    dots = axes.scatter(n, lr, c=value, cmap=cmap, s=28, alpha=0.6, linewidths=0, zorder=2, label="grid runs")
    figure.colorbar(dots, ax=axes, label=f"{metric} (seed mean)")


def _draw_lines(axes: Any, fit: _Fit, result: dict[str, Any]) -> None:
    """The fitted law with its bootstrap 95% band, and the paper's law for reference, over sizes and predictions."""
    sizes = [size.n for size in fit.sizes] + [float(key) for key in result["predict"]]
    x = np.geomspace(min(sizes) / 2, max(sizes) * 2, 200)
    if fit.a_boot.size:
        lines = fit.a_boot[:, None] * np.log(x)[None, :] + fit.b_boot[:, None]
        low, high = np.exp(np.percentile(lines, [2.5, 97.5], axis=0))
        axes.fill_between(x, low, high, color="C0", alpha=0.15, linewidth=0, label="bootstrap 95% band")
    label = f"fit: η = {_law_text(fit.a, fit.b)}, R² = {fit.r2:.3f}"
    axes.plot(x, np.exp(fit.a * np.log(x) + fit.b), color="C0", linewidth=2, zorder=3, label=label)
    paper = np.exp(PAPER_LAW[0] * np.log(x) + PAPER_LAW[1])
    axes.plot(x, paper, "--", color="0.35", linewidth=1.2, zorder=3, label=f"MM1 paper: η = {_law_text(*PAPER_LAW)}")


def _draw_optima(axes: Any, result: dict[str, Any]) -> None:
    inner = [p for p in result["points"] if not p["edge"]]
    edge = [p for p in result["points"] if p["edge"]]
    style = {"s": 110, "zorder": 4, "linewidths": 1.8}
    if inner:
        n, lr = [p["n"] for p in inner], [p["lr"] for p in inner]
        axes.scatter(n, lr, facecolors="C3", edgecolors="black", label="optimal LR per size", **style)
    if edge:
        n, lr = [p["n"] for p in edge], [p["lr"] for p in edge]
        axes.scatter(n, lr, facecolors="none", edgecolors="C3", label="at grid edge: widen the grid", **style)


def _draw_predictions(axes: Any, result: dict[str, Any]) -> None:
    for key, prediction in result["predict"].items():
        lr, ci = prediction["lr"], prediction["ci95"]
        error = [[lr - ci[0]], [ci[1] - lr]] if ci else None
        label = f"prediction N = {key}: η = {lr:.2e}, λ = {prediction['weight_decay']:.1e}"
        axes.errorbar(
            [float(key)], [lr], yerr=error, fmt="*", markersize=16, color="C1", markeredgecolor="black", capsize=4
        )
        axes.plot([], [], "*", markersize=12, color="C1", markeredgecolor="black", label=label)


# ---------------------------------------------------------------------------------------------- the text
def format_law(result: dict[str, Any]) -> str:
    """A few readable lines: the law with its intervals, the optimum per size, predictions, the paper's law."""
    ci = result["ci95"]
    lines = [
        f"LR scaling law (MM1 Sec. 3.4): eta = {_law_text(result['a'], result['b'])}",
        f"  a = {result['a']:+.4f}  95% CI {_ci_text(ci['a'], '+.4f')}",
        f"  b = {result['b']:+.4f}  95% CI {_ci_text(ci['b'], '+.4f')}",
        f"  R^2 = {result['r2']:.4f}  ({len(result['points'])} sizes, best LR by {result['mode']} {result['metric']},"
        f" {result['bootstrap']} bootstrap replicates)",
        "",
        f"  {'N':>10}  {'optimal LR':>10}  {result['metric']:>14}",
    ]
    for point in result["points"]:
        note = "  edge: widen the grid" if point["edge"] else ""
        lines.append(f"  {point['n']:>10.3g}  {point['lr']:>10.3e}  {point['metric']:>14.4f}{note}")
    lines += _prediction_lines(result)
    lines.append("")
    lines.append(f"  paper (MM1 eq. 1): eta = {_law_text(*PAPER_LAW)}; {_paper_comparison(result)}")
    return "\n".join(lines)


def _prediction_lines(result: dict[str, Any]) -> list[str]:
    if not result["predict"]:
        return []
    lines = ["", f"  {'predict N':>10}  {'LR':>10}  {'weight decay':>12}  95% CI of LR"]
    for key, prediction in result["predict"].items():
        lr, decay = prediction["lr"], prediction["weight_decay"]
        lines.append(f"  {key:>10}  {lr:>10.3e}  {decay:>12.3e}  {_ci_text(prediction['ci95'], '.3e')}")
    return lines


def _paper_comparison(result: dict[str, Any]) -> str:
    """The two laws side by side at the predicted sizes, or at MM1-30B's N = 3e10 when none was asked for."""
    sizes = [float(key) for key in result["predict"]] or [3e10]
    parts = []
    for n in sizes:
        ours = math.exp(result["a"] * math.log(n) + result["b"])
        paper = math.exp(PAPER_LAW[0] * math.log(n) + PAPER_LAW[1])
        parts.append(f"at N = {n:g} the paper gives {paper:.3e}, this fit {ours:.3e} ({ours / paper:.2f}x)")
    return "; ".join(parts)


def _law_text(a: float, b: float) -> str:
    return f"exp({a:.4f} ln N {'-' if b < 0 else '+'} {abs(b):.4f})"


def _ci_text(interval: list[float] | None, spec: str) -> str:
    return f"[{interval[0]:{spec}}, {interval[1]:{spec}}]" if interval else "(no bootstrap replicate kept)"
