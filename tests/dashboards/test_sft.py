"""SFT read-back (MM1 Sec. 5, Fig. 7c) on runs written through the real MLflow API, laid out as a second-stage
sweep logs them: tag ``mm1.init_from_run``, params ``train.stage = sft``, ``train.init_from.*``, lineage params
``init.<path>`` and ``init.step``, metrics ``eval/sft/*``. The sources are a small pre-training connector sweep
(logged before ``train.stage`` existed: no such param)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
import pytest

from dashboards.compare import compare_table, default_metrics
from dashboards.plots import Report, make_report
from dashboards.runs import Store, latest_per_trial, varied_params
from tests.conftest import run_mm1
from tests.dashboards.conftest import FakeStore

PRETRAIN, SFT_EXPERIMENT = "mm1", "mm1-sft"
CONNECTORS = ("avg-pool", "c-abstractor")
PT_SEEDS, SFT_SEEDS = (0, 1), (0, 1)
PT_SCORE = {("avg-pool", 0): 20.0, ("avg-pool", 1): 23.0, ("c-abstractor", 0): 30.0, ("c-abstractor", 1): 31.0}
TASKS = {"caption": 10.0, "vqa": 20.0, "counting": 0.0}
SFT_BONUS = {"avg-pool": 0.0, "c-abstractor": 4.0}
STEPS = {10: 10, 20: 20, "last": 40}  # train.init_from.step -> init.step (the source's 40 trained steps)
SFT_KINDS = {"sft-lesson", "sft-steps"}


def pretrain_trial(connector: str, seed: int) -> dict:
    params = {
        "model.connector.type": connector,
        "model.connector.num_tokens": 16,
        "model.encoder.name": "vit-tiny",
        "train.max_steps": 40,
        "train.seed": seed,
    }
    score = PT_SCORE[(connector, seed)]
    metrics = {"eval/avg/4shot": score + 5.0, "eval/textcore": 40.0, "eval/loss": 2.0}
    history = {"eval/avg/0shot": [(step, pt_score(connector, seed, step)) for step in (10, 20, 40)]}  # periodic
    return {"params": params, "metrics": metrics, "history": history}


def pt_score(connector: str, seed: int, step: int) -> float:
    """The 0-shot average a source logged at ``step`` (PT_SCORE at its last step, 40)."""
    return PT_SCORE[(connector, seed)] - 0.1 * (40 - step)


def sft_score(connector: str, task: str, step: int, source_seed: int, seed: int) -> float:
    return 40.0 + TASKS[task] + SFT_BONUS[connector] + 0.1 * step + 0.5 * source_seed + (1.0 if seed else -1.0)


def sft_trial(source: str, connector: str, source_seed: int, step: int | str, seed: int, curve: bool = True) -> dict:
    """One SFT trial as the orchestrator logs it: the model inherited from the source, the lineage as init.*."""
    init_step = STEPS[step]
    params = {
        "train.stage": "sft",
        "model.connector.type": connector,  # inherited from the source: follows init.model.connector.type
        "model.connector.num_tokens": 16,
        "model.encoder.name": "vit-tiny",
        "train.max_steps": 20,
        "train.seed": seed,
        "train.init_from.sweep": "pt",
        "train.init_from.step": step,
        "train.init_from.run": source,
        "train.init_from.path": f"/checkpoints/{source}-step{init_step}.pt",
        "init.model.connector.type": connector,
        "init.train.seed": source_seed,
        "init.step": init_step,
    }
    metrics = {f"eval/sft/{t}": sft_score(connector, t, init_step, source_seed, seed) for t in TASKS}
    metrics["eval/sft/avg"] = statistics.mean(metrics.values())
    metrics["eval/sft/loss"] = 1.0
    history = {"train/loss": [(step, 2.0 - 0.01 * step) for step in range(0, 20, 5)]} if curve else {}
    return {"params": params, "metrics": metrics, "history": history, "tags": {"mm1.init_from_run": source}}


@pytest.fixture(scope="module")
def sft_store(tmp_path_factory) -> tuple[FakeStore, dict[tuple[str, int], str]]:
    """Experiment ``mm1``: pre-training sweep ``pt`` (2 connectors x 2 seeds) and the Fig. 7c sweep ``sft-steps``
    (every source at steps 10, 20, last; no loss curves, to draw fewer figures); experiment ``mm1-sft``:
    ``sft-connectors``, SFT of every ``pt`` run with 2 SFT seeds (its sources live in the other experiment)."""
    store = FakeStore(tmp_path_factory.mktemp("sft"))
    keys = [(c, s) for c in CONNECTORS for s in PT_SEEDS]
    store.add_sweep(PRETRAIN, "pt", [pretrain_trial(c, s) for c, s in keys])
    sources = dict(zip(keys, store.trial_runs["pt"], strict=True))
    connectors = [sft_trial(sources[c, s], c, s, "last", seed) for c, s in keys for seed in SFT_SEEDS]
    store.add_sweep(SFT_EXPERIMENT, "sft-connectors", connectors)
    steps = [sft_trial(sources[c, s], c, s, step, 0, curve=False) for c, s in keys for step in STEPS]
    store.add_sweep(PRETRAIN, "sft-steps", steps)
    return store, sources


@pytest.fixture(scope="module")
def reports(sft_store, tmp_path_factory) -> dict[str, Report]:
    store, _ = sft_store
    out = tmp_path_factory.mktemp("reports")
    return {
        SFT_EXPERIMENT: make_report(Store(store.uri), SFT_EXPERIMENT, None, out / "sft"),
        PRETRAIN: make_report(Store(store.uri), PRETRAIN, None, out / "both"),
    }


def names(report: Report) -> dict[str, set[str]]:
    drawn: dict[str, set[str]] = {}
    for figure in report.figures:
        drawn.setdefault(figure.name, set()).update(figure.sweeps)
    return drawn


def test_sft_lesson_puts_the_source_score_beside_the_sft_score(reports):
    report = reports[SFT_EXPERIMENT]
    assert names(report) == {"sft-lesson": {"sft-connectors"}, "learning-curves": {"sft-connectors"}}
    (figure,) = [f for f in report.figures if f.name == "sft-lesson"]
    png, svg, csv = figure.files
    assert csv.name == "sft-lesson-sft-connectors.csv" and png.stat().st_size > 10_000 and "<svg" in svg.read_text()
    table = pd.read_csv(csv)
    assert list(table["init.model.connector.type"]) == list(CONNECTORS)
    pre = "pre-training eval/avg/0shot"  # the smallest k the sources logged
    assert list(table.columns[:5]) == ["init.model.connector.type", "runs", pre, f"{pre} std", f"{pre} n"]
    for _, row in table.iterrows():
        connector = row["init.model.connector.type"]
        sources = [PT_SCORE[connector, s] for s in PT_SEEDS]
        # each source counted once although two SFT seeds started from it
        assert row[pre] == pytest.approx(statistics.mean(sources))
        assert row[f"{pre} std"] == pytest.approx(statistics.stdev(sources)) and row[f"{pre} n"] == 2
        runs = [(s, seed) for s in PT_SEEDS for seed in SFT_SEEDS]
        avg = [statistics.mean(sft_score(connector, t, 40, s, seed) for t in TASKS) for s, seed in runs]
        assert row["eval/sft/avg"] == pytest.approx(statistics.mean(avg)) and row["eval/sft/avg n"] == 4
        assert row["eval/sft/vqa"] == pytest.approx(statistics.mean(sft_score(connector, "vqa", 40, *r) for r in runs))
        assert row["runs"] == 4
    assert {"eval/sft/caption", "eval/sft/counting"} <= set(table.columns) and "eval/sft/loss" not in table.columns
    assert "eval/avg/0shot of the source runs" in figure.caption and figure.seeds == 4 and figure.runs == 8


def test_sft_sweep_draws_no_pretraining_figure_and_says_why(reports):
    reasons = reports[SFT_EXPERIMENT].skipped
    connectors = [reason for name, reason in reasons if name == "connectors"]
    assert connectors == [
        "sweep sft-connectors: an SFT sweep (train.stage = sft): its runs log eval/sft/*, not the pre-training "
        "k-shot metrics this figure plots (see sft-lesson, sft-steps)"
    ]
    assert dict(reasons)["encoders"].startswith("no sweep varies model.encoder.name")
    assert "init.step" in dict(reasons)["sft-steps"]


def test_sft_learning_curves_have_a_line_per_source_choice(reports):
    (figure,) = [f for f in reports[SFT_EXPERIMENT].figures if f.name == "learning-curves"]
    # one line per connector: run ids, checkpoint paths, source seeds and inherited params are not axes
    assert set(figure.table["series"]) == set(CONNECTORS)
    assert set(figure.table["train/loss n"]) == {4}


def test_fig_7c_sft_score_by_pretraining_step(reports):
    report = reports[PRETRAIN]
    assert names(report) == {
        "connectors": {"pt"},
        "sft-steps": {"sft-steps"},
        "sft-lesson": {"sft-steps"},
    }, report.skipped
    (figure,) = [f for f in report.figures if f.name == "sft-steps"]
    table = pd.read_csv(figure.files[2])
    assert list(table.columns[:3]) == ["init.model.connector.type", "init.step", "runs"]  # a line per connector
    assert list(table["init.step"]) == [10, 20, 40] * 2
    for _, row in table.iterrows():
        connector, step = row["init.model.connector.type"], int(row["init.step"])
        runs = [statistics.mean(sft_score(connector, t, step, s, 0) for t in TASKS) for s in PT_SEEDS]
        assert row["eval/sft/avg"] == pytest.approx(statistics.mean(runs)) and row["eval/sft/avg n"] == 2
        caption = [sft_score(connector, "caption", step, s, 0) for s in PT_SEEDS]
        assert row["eval/sft/caption"] == pytest.approx(statistics.mean(caption))
        assert row["eval/sft/loss"] == pytest.approx(1.0)  # the held-out SFT loss has a panel of its own
    assert figure.files[0].name == "sft-steps-sft-steps.png" and figure.files[0].stat().st_size > 10_000
    # the connector lesson per pre-training step: a source's score at the step its checkpoint was taken
    (lesson,) = [f for f in report.figures if f.name == "sft-lesson"]
    pre = "pre-training eval/avg/0shot"
    for _, row in lesson.table.iterrows():
        scores = [pt_score(row["init.model.connector.type"], s, row["init.step"]) for s in PT_SEEDS]
        assert row[pre] == pytest.approx(statistics.mean(scores)) and row[f"{pre} n"] == 2
    assert len(lesson.table) == 6 and "logged at that step." in lesson.caption
    # the pre-training sweep's Fig. 4 is unchanged by the SFT runs beside it
    (connectors,) = [f for f in report.figures if f.name == "connectors"]
    assert set(connectors.table["model.connector.type"]) == set(CONNECTORS) and len(connectors.table) == 2
    assert connectors.table["eval/avg/0shot"].tolist() == pytest.approx([21.5, 30.5])


def test_pretraining_only_store_draws_no_sft_figure(sft_store, tmp_path: Path):
    store, _ = sft_store
    report = make_report(Store(store.uri), PRETRAIN, "pt", tmp_path)
    assert not SFT_KINDS & {f.name for f in report.figures}
    reasons = dict(report.skipped)
    assert SFT_KINDS <= set(reasons) and all("train.stage = sft" in reasons[k] for k in SFT_KINDS)
    assert reasons["sft-lesson"].startswith("no SFT sweep")


def test_lineage_params_are_axes_and_the_rest_follows(sft_store):
    store, _ = sft_store
    frame = Store(store.uri).trials(SFT_EXPERIMENT, "sft-connectors")
    assert frame["init_from_run"].notna().all() and frame["init.step"].dtype.kind == "i"
    # source ids and checkpoint paths differ per run, seeds are seeds: none is an axis
    assert varied_params(frame) == ["init.model.connector.type", "model.connector.type"]


def test_compare_defaults_to_sft_scores_and_groups_by_lineage(sft_store, tmp_path: Path):
    store, _ = sft_store
    frame = latest_per_trial(Store(store.uri).trials(SFT_EXPERIMENT))
    metrics = default_metrics(frame)
    assert metrics == ["eval/sft/avg", "eval/sft/caption", "eval/sft/counting", "eval/sft/vqa", "train/loss"]
    table = compare_table(frame, ["init.model.connector.type"], metrics)
    got = dict(zip(table["init.model.connector.type"], table["eval/sft/vqa"], strict=True))
    runs = [(s, seed) for s in PT_SEEDS for seed in SFT_SEEDS]
    assert got == pytest.approx({c: statistics.mean(sft_score(c, "vqa", 40, *r) for r in runs) for c in CONNECTORS})
    both = latest_per_trial(Store(store.uri).trials(PRETRAIN))  # pre-training and SFT runs: both kinds of score
    assert default_metrics(both) == [
        "eval/avg/0shot", "eval/avg/4shot", "eval/textcore", "eval/sft/avg", "eval/sft/caption", "eval/sft/counting",
        "eval/sft/vqa",
    ]  # fmt: skip
    pretrain = latest_per_trial(Store(store.uri).trials(PRETRAIN, "pt"))
    assert default_metrics(pretrain) == ["eval/avg/0shot", "eval/avg/4shot", "eval/textcore"]


def test_cli_compare_by_a_lineage_param(sft_store, tmp_path: Path):
    store, _ = sft_store
    args = ["compare", "--experiment", SFT_EXPERIMENT, "--tracking-uri", store.uri, "--by", "init.model.connector.type"]
    result = run_mm1(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header[:3] == ["init.model.connector.type", "runs", "eval/sft/avg"] and "eval/textcore" not in header
