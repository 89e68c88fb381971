"""``make_report`` / ``mm1 plots`` on fake experiments written through the real MLflow API: one fake sweep per
figure kind (two seeds where error bars matter), every figure drawn once, skipped cleanly when its axis is absent,
its table holding the seed-averaged numbers, its files logged to the parent run of its sweep."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pandas.testing import assert_series_equal

from dashboards import DashboardError
from dashboards.plots import Figure, Report, cap_int_label, image_text_label, make_report
from dashboards.runs import Store
from tests.conftest import run_mm1
from tests.dashboards.conftest import FakeStore

EXPERIMENT, SMALL = "lessons", "lr-only"
SHOTS = (0, 4, 8)
SEED_OFFSET = {0: -0.5, 1: 0.5}  # two seeds: mean = the effect, std = sqrt(0.5)
SEED_STD = math.sqrt(0.5)

BASE = {
    "model.encoder.name": "vit-tiny",
    "model.encoder.resolution": 32,
    "model.connector.type": "avg-pool",
    "model.connector.num_tokens": 16,
    "model.decoder.name": "lm-tiny",
    "model.decoder.non_embedding_params": 100_000,
    "model.highres.mode": "none",
    "model.highres.resolution": None,
    "data.mixture.caption": 0.45,
    "data.mixture.interleaved": 0.45,
    "data.mixture.text": 0.1,
    "data.synthetic_captions": False,
    "train.lr": 0.002,
    "train.max_steps": 40,
    "train.seed": 0,
}
ENCODER_BONUS = {"vit-tiny": 0.0, "vit-small": 3.0}
CONNECTOR_BONUS = {"avg-pool": 0.0, "attn-pool": 1.0, "c-abstractor": 0.5}
DECODER_N = {"lm-tiny": 100_000, "lm-small": 400_000}


def effective_resolution(p: dict) -> int:
    return p["model.highres.resolution"] if p["model.highres.mode"] != "none" else p["model.encoder.resolution"]


def score(p: dict, k: int) -> float:
    """A made-up but smooth k-shot meta-average (percent) without the seed offset."""
    value = 20.0 + 1.5 * k + ENCODER_BONUS.get(p["model.encoder.name"], 0) + CONNECTOR_BONUS[p["model.connector.type"]]
    value += 4.0 * math.log2(effective_resolution(p) / 32) + 0.25 * p["model.connector.num_tokens"]
    value += {"interpolate": -1.0, "subimage": 1.5}.get(p["model.highres.mode"], 0.0)
    caption_share = p["data.mixture.caption"] / max(p["data.mixture.caption"] + p["data.mixture.interleaved"], 1e-9)
    value += (6.0 if k == 0 else -0.8 * k) * caption_share + (2.0 if p["data.synthetic_captions"] else 0.0)
    value += 3.0 * p["data.mixture.text"] * (k > 0)
    n = DECODER_N[p["model.decoder.name"]]
    best_lr = 0.2 * n**-0.42  # MM1 Eq. 1-like: larger decoders want a smaller peak LR
    value -= 3.0 * math.log(p["train.lr"] / best_lr) ** 2
    return value


def textcore(p: dict) -> float:
    return 40.0 + 10.0 * p["data.mixture.text"] + 2.0 * p["data.mixture.interleaved"]


def trial(seed: int = 0, history: bool = False, **overrides) -> dict:
    params = {**BASE, **{key.replace("__", "."): value for key, value in overrides.items()}, "train.seed": seed}
    params["model.decoder.non_embedding_params"] = DECODER_N[params["model.decoder.name"]]
    metrics = {f"eval/avg/{k}shot": score(params, k) + SEED_OFFSET[seed] for k in SHOTS}
    metrics["eval/textcore"] = textcore(params) + SEED_OFFSET[seed]
    metrics["eval/loss"] = 3.0 - 0.01 * metrics["eval/avg/4shot"]
    out = {"params": {k: v for k, v in params.items()}, "metrics": metrics}
    final = 2.0 - 0.02 * score(params, 4) + 0.1 * seed
    if history:
        out["history"] = {"train/loss": [(step, final + 3.0 * math.exp(-step / 8)) for step in range(0, 40, 2)]}
    else:
        out["metrics"]["train/loss"] = final
    return out


def grid(seeds=(0, 1), history=False, **axes) -> list[dict]:
    names = list(axes)
    return [
        trial(seed, history, **dict(zip(names, values, strict=True)))
        for values in itertools.product(*axes.values())
        for seed in seeds
    ]


def mixture(caption: float, interleaved: float, text: float) -> dict:
    return {"data__mixture__caption": caption, "data__mixture__interleaved": interleaved, "data__mixture__text": text}


SWEEPS = {
    "encoders": grid(model__encoder__name=["vit-tiny", "vit-small"], model__encoder__resolution=[32, 64], history=True),
    "connectors": grid(
        seeds=(0,),
        model__connector__type=["avg-pool", "attn-pool", "c-abstractor"],
        model__connector__num_tokens=[4, 16],
        model__encoder__resolution=[32, 64],
    ),
    "mixture": [trial(seed, **mixture(c, 1 - c, 0.0)) for c in (1.0, 2 / 3, 0.5, 1 / 3, 0.0) for seed in (0, 1)],
    "text-only": [
        trial(seed, **mixture(c * (1 - t), (1 - c) * (1 - t), t))
        for c in (1.0, 0.0)
        for t in (0.0, 0.1)
        for seed in (0, 1)
    ],
    "image-text": [trial(0, **mixture((1 - t) / 2, (1 - t) / 2, t)) for t in (0.0, 1 / 11, 0.2, 1 / 3)],
    "synthetic": grid(data__synthetic_captions=[False, True]),
    "lr": grid(seeds=(0,), model__decoder__name=["lm-tiny", "lm-small"], train__lr=[5e-4, 1e-3, 2e-3, 4e-3]),
    "highres": [
        trial(seed, **{"model__highres__mode": mode, "model__highres__resolution": res})
        for mode, res in [
            ("none", None),
            ("interpolate", 64),
            ("interpolate", 128),
            ("subimage", 64),
            ("subimage", 128),
        ]
        for seed in (0, 1)
    ],
}
ALL_KINDS = {
    "encoders", "connectors", "data-mixture", "data-text-only", "data-image-text-ratio", "data-synthetic",
    "lr-scaling", "resolution", "learning-curves",
}  # fmt: skip
SFT_KINDS = {"sft-lesson", "sft-steps"}  # drawn from SFT sweeps only (tests/dashboards/test_sft.py)


@pytest.fixture(scope="module")
def lessons(tmp_path_factory) -> tuple[FakeStore, dict[str, str]]:
    """One store: experiment ``lessons`` (a sweep per figure kind) and ``lr-only`` (only train.lr varies)."""
    store = FakeStore(tmp_path_factory.mktemp("store"))
    parents = {name: store.add_sweep(EXPERIMENT, name, trials) for name, trials in SWEEPS.items()}
    parents[SMALL] = store.add_sweep(SMALL, SMALL, grid(train__lr=[1e-3, 3e-3], history=True))
    return store, parents


@pytest.fixture(scope="module")
def report(lessons, tmp_path_factory) -> Report:
    store, _ = lessons
    return make_report(Store(store.uri), EXPERIMENT, None, tmp_path_factory.mktemp("report"))


def drawn(report: Report, name: str, sweep: str) -> Figure:
    found = [f for f in report.figures if f.name == name and f.sweeps == {sweep}]
    assert len(found) == 1, [(f.name, f.sweeps) for f in report.figures]
    return found[0]


def row(table: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        mask &= table[column.replace("__", ".")] == value
    assert mask.sum() == 1, (where, table)
    return table[mask].iloc[0]


def assert_valid_files(figure: Figure) -> None:
    png, svg, csv = figure.files
    assert png.suffix == ".png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = svg.read_text()
    assert svg.suffix == ".svg" and "<svg" in text[:1000] and len(text) > 10_000
    assert csv.suffix == ".csv" and len(pd.read_csv(csv)) == len(figure.table)
    stem = png.stem
    assert stem == f"{figure.name}-{next(iter(figure.sweeps)) or EXPERIMENT}", stem


def test_every_figure_kind_is_drawn_from_its_sweep(report: Report):
    kinds = {f.name for f in report.figures}
    assert kinds == ALL_KINDS, report.skipped
    for figure in report.figures:
        if figure.name != "lr-scaling":
            assert_valid_files(figure)
        assert figure.title and figure.caption and figure.runs > 0
    # every sweep gets learning curves when its runs have a train/loss history; the others say why not
    assert {next(iter(f.sweeps)) for f in report.figures if f.name == "learning-curves"} == {"encoders"}
    assert any("no per-step history" in r for n, r in report.skipped if n == "learning-curves"), report.skipped
    assert report.index.exists()


def test_encoder_table_holds_seed_averages(report: Report):
    figure = drawn(report, "encoders", "encoders")
    got = row(figure.table, model__encoder__name="vit-small", model__encoder__resolution=64)
    expected = score({**BASE, "model.encoder.name": "vit-small", "model.encoder.resolution": 64}, 4)
    assert got["eval/avg/4shot"] == pytest.approx(expected)
    assert got["eval/avg/4shot std"] == pytest.approx(SEED_STD)
    assert got["eval/avg/4shot n"] == 2
    assert len(figure.table) == 4 and figure.seeds == 2 and figure.runs == 8


def test_connector_bars_group_by_the_other_varied_axes(report: Report):
    figure = drawn(report, "connectors", "connectors")
    assert len(figure.table) == 12
    got = row(
        figure.table, model__connector__type="attn-pool", model__connector__num_tokens=4, model__encoder__resolution=64
    )
    params = {**BASE, "model.connector.type": "attn-pool", "model.connector.num_tokens": 4}
    assert got["eval/avg/8shot"] == pytest.approx(score({**params, "model.encoder.resolution": 64}, 8) - 0.5)
    assert got["eval/avg/8shot n"] == 1 and math.isnan(got["eval/avg/8shot std"])
    # the same sweep varies the resolution: Fig. 7b is drawn for it too; Table 1 is not (resolution is Fig. 4's)
    drawn(report, "resolution", "connectors")
    assert not [f for f in report.figures if f.name == "encoders" and f.sweeps == {"connectors"}]


def test_data_figures_use_the_paper_labels_and_metrics(report: Report):
    mix = drawn(report, "data-mixture", "mixture").table
    assert list(mix["cap/int"]) == ["0/100", "33/66", "50/50", "66/33", "100/0"]
    got = row(mix, **{"cap/int": "66/33"})
    assert got["eval/avg/0shot"] == pytest.approx(score({**BASE, **_mix(2 / 3, 1 / 3, 0.0)}, 0))
    assert got["eval/textcore"] == pytest.approx(textcore(_mix(2 / 3, 1 / 3, 0.0)))
    assert got["eval/textcore std"] == pytest.approx(SEED_STD)

    text_only = drawn(report, "data-text-only", "text-only").table
    assert set(text_only["data.mixture.text"]) == {0.0, 0.1} and set(text_only["cap/int"]) == {"100/0", "0/100"}
    got = row(text_only, data__mixture__text=0.1, **{"cap/int": "0/100"})
    assert got["eval/avg/4shot"] == pytest.approx(score({**BASE, **_mix(0.0, 0.9, 0.1)}, 4))

    ratio = drawn(report, "data-image-text-ratio", "image-text").table
    assert list(ratio["image:text"]) == ["67:33", "80:20", "91:9", "100:0"]
    assert (ratio["eval/avg/0shot n"] == 1).all()

    synthetic = drawn(report, "data-synthetic", "synthetic").table
    on = row(synthetic, data__synthetic_captions=True)
    assert on["eval/avg/8shot"] == pytest.approx(score({**BASE, "data.synthetic_captions": True}, 8))
    assert on["eval/avg/8shot std"] == pytest.approx(SEED_STD)


def _mix(caption: float, interleaved: float, text: float) -> dict:
    return {"data.mixture.caption": caption, "data.mixture.interleaved": interleaved, "data.mixture.text": text}


def test_resolution_figure_lines_per_highres_mode(report: Report):
    table = drawn(report, "resolution", "highres").table
    assert set(table["model.highres.mode"]) == {"none", "interpolate", "subimage"}
    got = row(table, model__highres__mode="subimage", **{"image resolution": 128})
    params = {**BASE, "model.highres.mode": "subimage", "model.highres.resolution": 128}
    assert got["eval/avg/0shot"] == pytest.approx(score(params, 0))
    assert got["eval/avg/0shot std"] == pytest.approx(SEED_STD)


def test_learning_curves_average_seeds_per_step(report: Report):
    figure = drawn(report, "learning-curves", "encoders")
    assert figure.table["series"].nunique() == 4
    got = figure.table[(figure.table["series"] == "vit-tiny · 32 px") & (figure.table["step"] == 0)].iloc[0]
    final = 2.0 - 0.02 * score(BASE, 4)
    assert got["train/loss"] == pytest.approx(final + 3.0 + 0.05)  # seeds add 0 and 0.1
    assert got["train/loss std"] == pytest.approx(0.1 / math.sqrt(2))
    assert got["train/loss n"] == 2
    assert figure.display is not None and len(figure.display) == 4 and set(figure.display["step"]) == {38}


def test_lr_scaling_drawn_by_lrfit(report: Report):
    figure = drawn(report, "lr-scaling", "lr")
    assert [Path(f).name for f in figure.files] == ["lr-scaling-lr.png", "lr-scaling-lr.svg", "lr-scaling-lr.csv"]
    assert all(Path(f).stat().st_size > 1000 for f in figure.files[:2])
    # score() peaks at lr = 0.2 N^-0.42 (quadratic in ln lr): lrfit's vertex per size and its line recover it
    best = figure.table.set_index("n")["lr"].to_dict()
    assert best == {n: pytest.approx(0.2 * n**-0.42, rel=1e-6) for n in DECODER_N.values()}
    assert not figure.table["edge"].any()
    assert "Fit: lr = exp(-0.42 ln N - 1.609), R² = 1.000" in figure.caption and "8-shot" in figure.caption


def test_artifacts_logged_to_the_parent_run_of_their_sweep(report: Report, lessons):
    store, parents = lessons
    client = MlflowClient(tracking_uri=store.uri)
    logged = {p.path.split("/", 1)[1] for p in client.list_artifacts(parents["connectors"], "dashboards")}
    assert {"connectors-connectors.png", "connectors-connectors.svg", "connectors-connectors.csv"} <= logged
    assert {"resolution-connectors.png", "index.html"} <= logged
    assert not any("encoders" in name for name in logged), logged  # other sweeps' figures go to their own parents
    encoders = {p.path.split("/", 1)[1] for p in client.list_artifacts(parents["encoders"], "dashboards")}
    assert {"encoders-encoders.png", "learning-curves-encoders.png", "index.html"} <= encoders


def test_a_sweep_that_only_varies_lr_skips_the_lesson_figures(lessons, tmp_path: Path):
    store, parents = lessons
    report = make_report(Store(store.uri), SMALL, None, tmp_path)
    assert [f.name for f in report.figures] == ["learning-curves"]
    curves = report.figures[0]
    assert_valid_files(curves)
    assert set(curves.table["series"]) == {"lr 0.001", "lr 0.003"}
    reasons = dict(report.skipped)
    assert set(reasons) == (ALL_KINDS | SFT_KINDS) - {"learning-curves"}
    assert reasons["connectors"] == "no sweep varies model.connector.type"
    assert "model.encoder.name" in reasons["encoders"]
    assert "data.synthetic_captions" in reasons["data-synthetic"]
    assert "decoder size" in reasons["lr-scaling"] and "image resolution" in reasons["resolution"]
    assert all(len(r.splitlines()) == 1 for r in reasons.values())


def test_sweep_filter_and_runs_without_a_sweep_tag(fake_store, tmp_path: Path):
    fake_store.add_sweep("untagged", "", grid(model__connector__type=["avg-pool", "attn-pool"]))
    report = make_report(Store(fake_store.uri), "untagged", None, tmp_path / "out")
    figure = drawn(report, "connectors", "")
    assert figure.files[0].name == "connectors-untagged.png"
    with pytest.raises(DashboardError, match="no finished trial runs in sweep 'nope'"):
        make_report(Store(fake_store.uri), "untagged", "nope", tmp_path / "out2")


def test_labels_follow_the_paper():
    assert [cap_int_label(c) for c in (1.0, 2 / 3, 0.5, 1 / 3, 0.0)] == ["100/0", "66/33", "50/50", "33/66", "0/100"]
    assert [image_text_label(s) for s in (1.0, 10 / 11, 0.8, 2 / 3)] == ["100:0", "91:9", "80:20", "67:33"]


def test_cli_plots_end_to_end(lessons, tmp_path: Path):
    store, parents = lessons
    out = tmp_path / "report"
    result = run_mm1("plots", "--experiment", SMALL, "--tracking-uri", store.uri, "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["drawn", "learning-curves"] for line in lines), result.stdout
    assert any(line.split()[:2] == ["skipped", "connectors"] for line in lines), result.stdout
    assert (out / "index.html").exists() and (out / f"learning-curves-{SMALL}.png").exists()
    assert str(out / "index.html") in result.stdout


def test_cli_plots_unknown_experiment_is_one_line_exit_2(lessons, tmp_path: Path):
    store, _ = lessons
    result = run_mm1("plots", "--experiment", "nope", "--tracking-uri", store.uri, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0 and "no experiment 'nope'" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / ".mm1").exists()


def test_seed_average_columns_are_what_the_index_shows(report: Report):
    figure = drawn(report, "data-synthetic", "synthetic")
    csv = pd.read_csv(figure.files[2])
    assert_series_equal(csv["eval/avg/0shot"], figure.table["eval/avg/0shot"], check_names=False)


def test_lr_scaling_metric_and_mode_can_be_chosen(lessons, tmp_path: Path):
    store, _ = lessons
    # eval/loss falls as the 4-shot score rises: its minimum sits at the same LR per size
    report = make_report(Store(store.uri), EXPERIMENT, "lr", tmp_path / "loss", lr_metric="eval/loss", lr_mode="min")
    figure = drawn(report, "lr-scaling", "lr")
    best = figure.table.set_index("n")["lr"].to_dict()
    assert best == {n: pytest.approx(0.2 * n**-0.42, rel=1e-6) for n in DECODER_N.values()}
    assert "eval/loss, lowest" in figure.caption
    missing = make_report(Store(store.uri), EXPERIMENT, "lr", tmp_path / "none", lr_metric="eval/nothing")
    reason = dict(missing.skipped)["lr-scaling"]
    assert reason.startswith("sweep lr: --metric: no finished run logged 'eval/nothing'")
