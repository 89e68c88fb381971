"""Issue 19's cases through the real CLI: each sweep used to validate and then fail (or hang) inside its trials;
now `mm1 sweep validate` (and plan, run, `mm1 train`) exits 2 naming the trial and the field, starting nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator.tracking import Tracker
from tests.conftest import run_mm1
from tests.orchestrator.test_lineage import PRE, _record

TOO_LONG = {  # every trial failed at start: an 8-shot prompt of up to 2569 tokens against max_seq_len 1024
    "name": "too-long",
    "base": {
        "model": {
            "encoder": {"name": "vit-tiny", "resolution": 128},
            "connector": {"type": "avg-pool", "num_tokens": 256},
        },
        "data": {"max_images": 3},
        "eval": {"shots": [0, 8]},
    },
    "grid": {"train.lr": [1e-3, 3e-3]},
}
HUGE = {"name": "huge", "base": {"model": {"encoder": {"resolution": 4096}}}}
HUGE_BATCH = {"name": "huge-batch", "base": {"train": {"batch_size": 100_000}}}


def _write(folder: Path, spec: dict | str, name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
    return path


def _refused(result, path: Path, field: str) -> list[str]:  # noqa: ANN001
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"mm1: error: {path}: ") for line in lines), lines
    assert any(f": {field}: " in line or f": base.{field}: " in line for line in lines), lines
    return lines


@pytest.mark.parametrize("verb", ["validate", "plan"])
def test_a_prompt_longer_than_the_decoder_is_found_before_any_trial(verb: str, tmp_path: Path) -> None:
    path = _write(tmp_path, TOO_LONG)
    (line,) = _refused(run_mm1("sweep", verb, str(path), cwd=tmp_path), path, "eval.shots")
    assert "a 8-shot prompt of up to 2569 tokens exceeds max_seq_len 1024" in line
    assert line.endswith("(every trial: 2)") and f"{path}: base.eval.shots: " in line
    varied = {**TOO_LONG, "grid": {"eval.shots": [[0, 2], [0, 8]]}}  # now one trial has it: that one is named
    (line,) = _refused(run_mm1("sweep", verb, str(_write(tmp_path, varied)), cwd=tmp_path), path, "eval.shots")
    assert f"{path}: trial " in line and "(0, 8)" not in line and "8-shot" in line


@pytest.mark.parametrize(("spec", "field"), [(HUGE, "model.encoder.resolution"), (HUGE_BATCH, "train.batch_size")])
def test_a_trial_too_large_for_the_machine_is_refused_in_seconds(spec: dict, field: str, tmp_path: Path) -> None:
    path = _write(tmp_path, spec)
    (line,) = _refused(run_mm1("sweep", "validate", str(path), cwd=tmp_path, timeout=60), path, field)
    assert "GiB at its peak" in line and "it will have" in line


def test_a_duplicate_grid_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: twice\ngrid:\n  train.lr: [1.0e-3]\n  train.lr: [3.0e-3]\n")
    (line,) = _refused(run_mm1("sweep", "validate", str(path), cwd=tmp_path), path, "grid.train.lr")
    assert line.endswith("grid.train.lr: duplicate key (lines 3 and 4)")


def test_an_sft_base_whose_model_does_not_fit_the_chosen_checkpoints(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _record(Tracker(uri), tmp_path, PRE)
    sft = {
        "name": "sft",
        "experiment": "lineage",
        "base": {
            "model": {"connector": {"type": "avg-pool", "num_tokens": 4}},
            "train": {
                "stage": "sft",
                "max_steps": 4,
                "init_from": {"sweep": "pre", "where": {"model.connector.type": "c-abstractor"}},
            },
        },
    }
    path = _write(tmp_path, sft)
    result = run_mm1("sweep", "validate", str(path), "--tracking-uri", uri, cwd=tmp_path)
    lines = _refused(result, path, "model.connector.type")
    assert any("'avg-pool' here, but 'c-abstractor' in the train.init_from checkpoint" in line for line in lines)
    del sft["base"]["model"]  # the model left to the checkpoints: it fits
    ok = run_mm1("sweep", "validate", str(_write(tmp_path, sft)), "--tracking-uri", uri, "--json", cwd=tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"trials": 2}, ok.stderr


def test_mm1_train_runs_the_same_preflight(tmp_path: Path) -> None:
    path = _write(tmp_path, TOO_LONG["base"], "trial.yaml")
    _refused(run_mm1("train", str(path), cwd=tmp_path), path, "eval.shots")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".mm1").exists()


def test_plan_prints_the_estimate_and_the_resolved_config(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "small", "base": {"train": {"max_steps": 5}}, "grid": {"train.lr": [1e-3, 3e-3]}})
    table = run_mm1("sweep", "plan", str(path), cwd=tmp_path)
    assert table.returncode == 0 and "peak memory" in table.stdout and "GFLOP/step" in table.stdout
    plan = json.loads(run_mm1("sweep", "plan", str(path), "--json", "--resolved", cwd=tmp_path).stdout)
    assert plan[0]["estimate"]["peak_bytes"] > 0 and plan[0]["config"]["train"]["warmup_ratio"] == 0.05
    resolved = run_mm1("sweep", "plan", str(path), "--resolved", "--set", "train.batch_size=8", cwd=tmp_path).stdout
    documents = list(yaml.safe_load_all(resolved))
    assert len(documents) == 2 and documents[1]["train"]["lr"] == 3e-3 and documents[0]["train"]["batch_size"] == 8
