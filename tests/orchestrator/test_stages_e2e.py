"""Two stages end to end through real Ray Tune, Lightning and MLflow: a pre-training sweep, then an SFT sweep whose
trials start from its trials' checkpoints (MM1 Sec. 5), with the lineage in MLflow and in the read-back verbs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mm1core.checkpoint import read_trial_checkpoint
from tests.conftest import run_sweep_trials

pytestmark = pytest.mark.slow

EVAL = {"shots": [0], "num_examples": 4, "max_new_tokens": 4, "tasks": ["caption", "counting"], "textcore": []}
PRE = {
    "name": "pre",
    "experiment": "stages",
    "base": {
        "model": {"encoder": {"name": "vit-tiny", "resolution": 32}, "connector": {"num_tokens": 4}},
        "train": {"max_steps": 12, "batch_size": 4, "log_every_n_steps": 4, "save_at_steps": [6]},
        "eval": EVAL,
    },
    "grid": {"model.connector.type": ["avg-pool", "attn-pool"]},
    "resources": {"cpus_per_trial": 1},
    "max_concurrent": 2,
}
SFT = {
    "name": "sft",
    "experiment": "stages",
    "base": {
        "train": {
            "stage": "sft",
            "init_from": {"sweep": "pre", "step": "last"},
            "max_steps": 8,
            "batch_size": 4,
            "log_every_n_steps": 4,
        },
        "eval": EVAL,
    },
    "resources": {"cpus_per_trial": 1},
    "max_concurrent": 2,
}


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, list]:
    workdir = tmp_path_factory.mktemp("stages")
    pre = run_sweep_trials(workdir, PRE)
    sft = run_sweep_trials(workdir, SFT)
    return workdir, pre, sft


def test_each_sft_run_names_the_run_it_started_from(stages) -> None:  # noqa: ANN001
    _, pre, sft = stages
    sources = {run.info.run_id: run for run in pre}
    assert len(sft) == 2 and all(run.info.status == "FINISHED" for run in sft)
    for run in sft:
        source = sources[run.data.tags["mm1.init_from_run"]]
        assert run.data.params["train.stage"] == "sft"
        assert run.data.params["init.model.connector.type"] == source.data.params["model.connector.type"]
        assert run.data.params["model.connector.type"] == source.data.params["model.connector.type"]  # inherited
        assert run.data.params["init.step"] == "12"
        assert run.data.params["train.init_from.path"] == source.data.tags["mm1.checkpoint"]


def test_sft_metrics_never_mix_with_pretraining_ones(stages) -> None:  # noqa: ANN001
    _, pre, sft = stages
    for run in sft:
        evals = {name for name in run.data.metrics if name.startswith("eval/")}
        assert {"eval/sft/caption", "eval/sft/counting", "eval/sft/avg", "eval/sft/loss"} <= evals
        assert all(name.startswith("eval/sft/") for name in evals), evals
        assert "data/share/caption" not in run.data.metrics
    for run in pre:
        assert "eval/avg/0shot" in run.data.metrics and not any(m.startswith("eval/sft/") for m in run.data.metrics)
        assert sorted(json.loads(run.data.tags["mm1.checkpoints"])) == ["12", "6"]


def test_the_sft_trial_trained_on_from_the_source_weights(stages) -> None:  # noqa: ANN001
    _, pre, sft = stages
    sources = {run.info.run_id: run for run in pre}
    for run in sft:
        before = read_trial_checkpoint(sources[run.data.tags["mm1.init_from_run"]].data.tags["mm1.checkpoint"])
        after = read_trial_checkpoint(run.data.tags["mm1.checkpoint"])
        assert set(before["model"]) == set(after["model"])
        changed = [n for n in after["model"] if not torch.equal(before["model"][n], after["model"][n])]
        assert changed  # trained on (test_init_from checks that a trial starts with the source's exact weights)
        drift = sum(float((after["model"][n] - before["model"][n]).norm()) for n in changed)
        scale = sum(float(before["model"][n].norm()) for n in changed)
        assert drift < 0.5 * scale  # 8 small steps away from the source, not a fresh model
        assert after["config"]["train"]["init_from"]["run"] == run.data.tags["mm1.init_from_run"]


def test_the_sweeps_figures_put_pretraining_choices_against_sft_results(stages) -> None:  # noqa: ANN001
    # (mm1 compare --by init.model.connector.type through the CLI: tests/dashboards/test_sft.py)
    workdir, _, _ = stages
    report = workdir / ".mm1" / "reports" / "sft"  # what `mm1 sweep run` drew at its end, as `mm1 plots` does
    assert (report / "sft-lesson-sft.png").is_file(), sorted(p.name for p in report.iterdir())
    assert "sft-lesson" in (report / "index.html").read_text()
    assert not (report / "connectors-sft.png").exists()  # a pre-training figure is not drawn from SFT runs
