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

from tests.conftest import run_mm1, run_sweep_trials

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
    return run_sweep_trials(workdir, spec)


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


def test_bad_records_are_skipped_and_counted_not_fatal(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "mm1core.data.sample_data", str(tmp_path / "data"), "--bad"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    data = tmp_path / "data"
    trial = {
        **TINY_TRIAL,
        "data": {
            "source": {
                "caption": str(data / "captions"),
                "interleaved": str(data / "interleaved.jsonl"),
                "text": str(data / "text.jsonl"),
            }
        },
    }
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(trial))
    db = f"sqlite:///{tmp_path / 'bad.db'}"
    result = run_mm1("train", "trial.yaml", "--tracking-uri", db, "--experiment", "bad", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped a bad record" in result.stderr
    client = MlflowClient(tracking_uri=db)
    (run,) = client.search_runs([client.get_experiment_by_name("bad").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["data/skipped"] > 0


def test_a_data_path_that_does_not_exist_is_bad_input(tmp_path: Path) -> None:
    for source, expected in (
        ({"caption": "nowhere/shards", "interleaved": "synthetic", "text": "synthetic"}, "base.data.source.caption: "),
        ({"caption": "synthetic", "interleaved": "synthetic"}, "base.data.source.text: missing, but mixture.text is"),
    ):
        (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"name": "x", "base": {"data": {"source": source}}}))
        result = run_mm1("sweep", "run", "spec.yaml", cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"mm1: error: spec.yaml: {expected}"), line
        assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".mm1").exists()
