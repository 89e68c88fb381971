"""Issue 4's end-to-end check: a sweep over `data.mixture` on the embedded world and on real formats on disk
(WebDataset shards, OBELICS-style parquet, text jsonl, written by `python -m mm1core.data.sample_data`), with
the realised shares in MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import run_mm1

pytestmark = pytest.mark.slow

MIXTURES = [
    {"caption": 1.0, "interleaved": 0.0, "text": 0.0},
    {"caption": 0.5, "interleaved": 0.5, "text": 0.0},
    {"caption": 0.45, "interleaved": 0.45, "text": 0.1},
    {"caption": 0.0, "interleaved": 1.0, "text": 0.0},
]
TINY_TRIAL = {
    "train": {"max_steps": 5, "batch_size": 8, "log_every_n_steps": 5},
    "eval": {"shots": [0], "num_examples": 2, "max_new_tokens": 3},
}


def sweep(workdir: Path, name: str, data: dict) -> list:
    spec = {
        "name": name,
        "experiment": "mixtures",
        "base": {**TINY_TRIAL, "data": data},
        "grid": {"data.mixture": MIXTURES},
        "max_concurrent": 2,
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = run_mm1("sweep", "run", str(path), cwd=workdir)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mixtures")
    runs = client.search_runs([experiment.experiment_id], f"tags.`mm1.sweep` = '{name}'", max_results=50)
    return [run for run in runs if run.data.tags.get("mm1.role") == "trial"]


def assert_realised_shares(trials: list) -> None:
    assert len(trials) == 4 and all(run.info.status == "FINISHED" for run in trials)
    for run in trials:
        for stream in ("caption", "interleaved", "text"):
            wanted = float(run.data.params[f"data.mixture.{stream}"])
            realised = run.data.metrics[f"data/share/{stream}"]
            assert realised == pytest.approx(wanted, abs=0.1), (stream, wanted, realised)  # 40 rows
            if wanted == 0:
                assert realised == 0.0
        assert run.data.metrics["data/skipped"] == 0.0


def test_mixture_sweep_on_the_embedded_world(tmp_path: Path) -> None:
    assert_realised_shares(sweep(tmp_path, "world", {"source": "synthetic"}))


def test_mixture_sweep_on_real_formats_on_disk(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "mm1core.data.sample_data", str(tmp_path / "data")], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    source = {
        "caption": str(tmp_path / "data" / "captions"),
        "interleaved": str(tmp_path / "data" / "interleaved.parquet"),
        "text": str(tmp_path / "data" / "text.jsonl"),
    }
    assert_realised_shares(sweep(tmp_path, "on-disk", {"source": source}))
