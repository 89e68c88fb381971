"""``mm1 fit-lr`` and ``dashboards.lrfit``: MM1's LR scaling law (Sec. 3.4, Fig. 6) fitted back from MLflow runs.

Runs are generated from a known law (metric a parabola in ln lr around the true optimum, plus seed noise), written
as real MLflow sweeps, and read back through the real CLI.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from dashboards import DashboardError
from dashboards.lrfit import LR_PARAM, N_PARAM, PAPER_LAW, fit_law, format_law, optimal_lr
from orchestrator.cli import main
from tests.conftest import run_mm1
from tests.dashboards.conftest import FakeStore

METRIC = "eval/avg/8shot"
TRUE_A, TRUE_B = -0.42, -0.55
SIZES = [1e6, 4e6, 1.6e7, 6.4e7, 2.56e8]
# Where the true optimum sits between grid points, in grid steps: never on one, never centred.
OFFSETS = [0.35, -0.4, 0.2, -0.25, 0.45]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def true_lr(n: float) -> float:
    return math.exp(TRUE_A * math.log(n) + TRUE_B)


def law_runs(
    sizes: list[float], offsets: list[float], seeds: int = 2, noise: float = 0.3, steps: range = range(-3, 4)
) -> list[dict]:
    """One row per run: a geometric LR grid (factor 2) per size around (not on) the true optimum; the metric is
    ``60 - 8 (ln lr - ln lr*)^2`` plus gaussian seed noise."""
    rng = np.random.default_rng(1234)
    rows = []
    for n, offset in zip(sizes, offsets, strict=True):
        best = true_lr(n)
        for step in steps:
            lr = best * 2.0 ** (step + offset)
            for seed in range(seeds):
                value = 60 - 8 * math.log(lr / best) ** 2 + rng.normal(0, noise)
                rows.append({N_PARAM: int(n), LR_PARAM: lr, "train.seed": seed, METRIC: value})
    return rows


def as_trials(rows: list[dict]) -> list[dict]:
    params = (N_PARAM, LR_PARAM, "train.seed")
    return [
        {
            "params": {**{k: row[k] for k in params}, "model.decoder.name": f"toy-{row[N_PARAM]}"},
            "metrics": {METRIC: row[METRIC], "eval/avg/4shot": row[METRIC] - 1},
        }
        for row in rows
    ]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeStore, dict[str, str]]:
    """One MLflow store for the CLI tests: experiments 'law' (five sizes, all optima interior), 'edge' (optima at
    the top and bottom of the grid) and 'one-size'. Returns the store and experiment -> sweep parent run id."""
    fake = FakeStore(tmp_path_factory.mktemp("lrfit-store"))
    edge_rows = law_runs([1e6, 1e7, 1e8], [0.3, 0.3, 0.3], steps=range(-3, 4))
    # Size 1e7 only gets LRs below its optimum, size 1e8 only above: best at the largest / the smallest LR.
    edge_rows = [
        r
        for r in edge_rows
        if not (r[N_PARAM] == 10**7 and r[LR_PARAM] > true_lr(1e7))
        and not (r[N_PARAM] == 10**8 and r[LR_PARAM] < true_lr(1e8))
    ]
    parents = {
        "law": fake.add_sweep("law", "lr-grid", as_trials(law_runs(SIZES, OFFSETS))),
        "edge": fake.add_sweep("edge", "lr-edge", as_trials(edge_rows)),
        "one-size": fake.add_sweep("one-size", "lr-one", as_trials(law_runs([123456], [0.2], seeds=1))),
    }
    return fake, parents


# ------------------------------------------------------------------------------------------------ optimal_lr
@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize(
    "lrs",
    [1e-4 * 2.0 ** np.arange(7), np.array([3e-4, 1e-4, 2e-3, 5e-4, 1e-3, 4e-3])],  # even; uneven and unsorted
    ids=["geometric", "uneven-unsorted"],
)
def test_quadratic_refinement_finds_interior_optimum(mode: str, lrs: np.ndarray):
    best = 7.3e-4  # between grid points
    sign = -1 if mode == "max" else 1
    values = 50 + sign * 5 * (np.log(lrs) - math.log(best)) ** 2
    lr, value, edge = optimal_lr(lrs, values, mode)
    assert lr == pytest.approx(best, rel=1e-6)
    assert value == pytest.approx(50, abs=1e-9)
    assert edge is False and isinstance(lr, float) and isinstance(value, float)


@pytest.mark.parametrize(
    ("lrs", "values", "expected"),
    [
        ([1e-4, 2e-4, 4e-4, 8e-4], [60, 55, 50, 45], (1e-4, 60)),  # best at the smallest LR
        ([1e-4, 2e-4, 4e-4, 8e-4], [45, 50, 55, 60], (8e-4, 60)),  # best at the largest LR
        ([3e-4], [52.5], (3e-4, 52.5)),  # a one-LR grid
    ],
    ids=["smallest", "largest", "single"],
)
def test_edge_optimum_is_flagged_and_unrefined(lrs, values, expected):
    assert optimal_lr(lrs, values, "max") == (expected[0], expected[1], True)
    # The same grid read as a loss: the best is now at the other end, still an edge (or the only point).
    assert optimal_lr(lrs, [-v for v in values], "min")[2] is True


def test_optimal_lr_rejects_bad_mode():
    with pytest.raises(DashboardError, match="--mode"):
        optimal_lr([1e-4, 2e-4], [1, 2], "median")


# --------------------------------------------------------------------------------------- fit_law in process
def test_fit_law_is_reproducible_fast_and_strict_json():
    sizes = [10 ** (6 + 0.5 * k) for k in range(10)]
    frame = pd.DataFrame(law_runs(sizes, [0.3, -0.2] * 5))
    start = time.perf_counter()
    result = fit_law(frame, METRIC, "max", predict=[3e10, 1e9])
    elapsed = time.perf_counter() - start
    assert elapsed < 1.5, f"fit_law took {elapsed:.2f}s for 10 sizes and 2000 replicates"
    assert fit_law(frame, METRIC, "max", predict=[3e10, 1e9]) == result  # seeded bootstrap
    assert fit_law(frame, METRIC, "max", seed=1)["ci95"] != result["ci95"]
    json.dumps(result, allow_nan=False)  # plain floats, no NaN
    assert list(result["predict"]) == ["3e+10", "1e+09"]
    assert abs(result["a"] - TRUE_A) < 0.02 and result["bootstrap"] == 2000


def test_fit_law_errors_name_the_flag():
    frame = pd.DataFrame(law_runs(SIZES[:2], OFFSETS[:2])).assign(**{"eval/textcore": 1.0, "train/loss": 2.0})
    with pytest.raises(DashboardError) as error:
        fit_law(frame, "eval/avg/0shot", "max")
    assert str(error.value) == (
        "--metric: no finished run logged 'eval/avg/0shot' (metrics seen: eval/avg/8shot, eval/textcore)"
    )
    with pytest.raises(DashboardError, match=r"^--experiment/--sweep: these runs have no 'train.lr' param"):
        fit_law(frame.drop(columns=[LR_PARAM]), METRIC, "max")
    with pytest.raises(DashboardError, match=r"need runs at two or more model sizes .*; found 1: 1000000$"):
        fit_law(frame[frame[N_PARAM] == 10**6], METRIC, "max")
    with pytest.raises(DashboardError, match=r"^--mode: must be 'max' or 'min', got 'best'$"):
        fit_law(frame, METRIC, "best")


def test_two_sizes_fit_exactly():
    frame = pd.DataFrame(law_runs(SIZES[:2], OFFSETS[:2], noise=0.0))
    result = fit_law(frame, METRIC, "max")
    assert result["a"] == pytest.approx(TRUE_A, abs=1e-9) and result["r2"] == 1.0
    assert result["ci95"]["a"] == pytest.approx([TRUE_A, TRUE_A], abs=1e-9)  # no noise: every replicate agrees


# ------------------------------------------------------------------------------------------- the real CLI
def test_cli_recovers_known_law_and_logs_outputs(store, tmp_path: Path):
    fake, parents = store
    out = tmp_path / "report"
    result = run_mm1(
        "fit-lr", "--experiment", "law", "--tracking-uri", fake.uri, "--json", "--predict", "3e10", "30000000000",
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    fit = json.loads(result.stdout)

    assert set(fit) == {"a", "b", "r2", "ci95", "points", "predict", "metric", "mode", "bootstrap", "paper"}
    assert all(isinstance(fit[key], float) for key in ("a", "b", "r2"))
    assert fit["metric"] == METRIC and fit["mode"] == "max" and 1900 < fit["bootstrap"] <= 2000
    assert fit["paper"] == {"a": PAPER_LAW[0], "b": PAPER_LAW[1]}
    assert [p["n"] for p in fit["points"]] == [int(n) for n in SIZES]
    assert all(isinstance(p["n"], int) and isinstance(p["lr"], float) and p["edge"] is False for p in fit["points"])
    for point, n in zip(fit["points"], SIZES, strict=True):  # each optimum within 10% despite the 2x grid
        assert point["lr"] == pytest.approx(true_lr(n), rel=0.1)

    # b is the line's value at ln N = 0, far from the data, so it moves with any error in a: check it loosely and
    # the line itself tightly where the sizes are (their geometric middle).
    assert abs(fit["a"] - TRUE_A) < 0.05 and abs(fit["b"] - TRUE_B) < 0.5
    assert math.exp(fit["a"] * math.log(1.6e7) + fit["b"]) == pytest.approx(true_lr(1.6e7), rel=0.05)
    low, high = fit["ci95"]["a"]
    assert low < high and low - 0.02 < TRUE_A < high + 0.02
    assert fit["ci95"]["b"][0] < fit["b"] < fit["ci95"]["b"][1]
    assert fit["r2"] > 0.95

    assert list(fit["predict"]) == ["3e10", "30000000000"]  # keyed by each size as the user wrote it
    assert fit["predict"]["30000000000"] == fit["predict"]["3e10"]
    prediction = fit["predict"]["3e10"]
    assert prediction["lr"] == pytest.approx(math.exp(fit["a"] * math.log(3e10) + fit["b"]))
    assert prediction["lr"] == pytest.approx(true_lr(3e10), rel=0.5)
    assert prediction["weight_decay"] == pytest.approx(0.1 * prediction["lr"])
    assert prediction["ci95"][0] < prediction["lr"] < prediction["ci95"][1]

    # Written to --out and logged to the sweep's parent run.
    assert json.loads((out / "fit.json").read_text()) == fit
    png = (out / "lr_scaling.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    assert (out / "lr_scaling.svg").read_text().lstrip().startswith("<?xml")
    artifacts = MlflowClient(tracking_uri=fake.uri).list_artifacts(parents["law"], "dashboards")
    assert sorted(a.path for a in artifacts) == [
        "dashboards/fit.json",
        "dashboards/lr_scaling.png",
        "dashboards/lr_scaling.svg",
    ]


def test_cli_text_output_flags_edge_optima(store, tmp_path: Path):
    fake, _ = store
    result = run_mm1("fit-lr", "--experiment", "edge", "--tracking-uri", fake.uri, "--out", "edge", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("LR scaling law (MM1 Sec. 3.4): eta = exp(")
    assert "R^2 = " in result.stdout and "paper (MM1 eq. 1): eta = exp(-0.4214 ln N - 0.5535)" in result.stdout
    edge_lines = [line for line in result.stdout.splitlines() if "edge: widen the grid" in line]
    assert len(edge_lines) == 2 and "1e+07" in edge_lines[0] and "1e+08" in edge_lines[1]
    assert "written: " in result.stdout

    points = json.loads((tmp_path / "edge" / "fit.json").read_text())["points"]
    assert [(p["n"], p["edge"]) for p in points] == [(10**6, False), (10**7, True), (10**8, True)]
    grid_top = max(lr for lr in (true_lr(1e7) * 2.0 ** (s + 0.3) for s in range(-3, 4)) if lr < true_lr(1e7))
    assert points[1]["lr"] == pytest.approx(grid_top)  # an edge optimum is the grid point itself
    assert format_law(json.loads((tmp_path / "edge" / "fit.json").read_text())) in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--experiment", "one-size"), "need runs at two or more model sizes (" + N_PARAM + "); found 1: 123456"),
        (("--experiment", "law", "--metric", "eval/avg/0shot"), "--metric: no finished run logged 'eval/avg/0shot'"),
        (("--experiment", "nowhere"), "--experiment: no experiment 'nowhere'"),
    ],
    ids=["one-size", "unlogged-metric", "no-experiment"],
)
def test_cli_bad_input_exits_2_with_one_line(store, tmp_path: Path, args: tuple[str, ...], message: str):
    fake, _ = store
    result = run_mm1("fit-lr", *args, "--tracking-uri", fake.uri, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mm1: error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / ".mm1").exists()


def test_invalid_mode_is_argparse_one_line(capsys: pytest.CaptureFixture[str]):
    assert main(["fit-lr", "--experiment", "law", "--mode", "median"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--mode" in error[0] and "invalid choice: 'median'" in error[0]
