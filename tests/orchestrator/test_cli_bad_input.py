"""Bad input through the real CLI: one line per problem on stderr, exit 2, no traceback, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_mm1

GOOD = {"name": "ok", "base": {"train": {"max_steps": 5}}, "grid": {"train.lr": [1e-3, 3e-3]}}

BAD_SPECS = {
    "unparseable-yaml": "name: [unclosed\n",
    "not-a-mapping": "- just\n- a list\n",
    "unknown-key": {"name": "x", "grdi": {}},
    "bad-dotted-path": {"name": "x", "grid": {"model.connector.kind": ["avg-pool"]}},
    "wrong-type": {"name": "x", "grid": {"train.batch_size": ["sixteen"]}},
    "ratios-not-one": {"name": "x", "base": {"data": {"mixture": {"caption": 0.6, "interleaved": 0.6, "text": 0}}}},
    "empty-grid-list": {"name": "x", "grid": {"train.lr": []}},
    "unequal-zip": {"name": "x", "zip": {"train.lr": [1e-3, 2e-3], "train.max_steps": [5]}},
    "unknown-connector": {"name": "x", "grid": {"model.connector.type": ["cabstractor"]}},
}


@pytest.mark.parametrize("verb", ["validate", "plan", "run", "status"])
@pytest.mark.parametrize("case", list(BAD_SPECS), ids=str)
def test_bad_spec_exits_2_with_one_line_per_problem(case, verb, write_yaml, tmp_path: Path):
    spec = write_yaml(BAD_SPECS[case])
    result = run_mm1("sweep", verb, str(spec), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"mm1: error: {spec}: ") for line in lines), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / ".mm1").exists()


def test_missing_file(tmp_path: Path):
    result = run_mm1("sweep", "validate", "nowhere.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "mm1: error: nowhere.yaml: no such file"


def test_bad_trial_file_for_train(write_yaml, tmp_path: Path):
    trial = write_yaml({"model": {"connector": {"num_tokens": 7}}}, "trial.yaml")
    result = run_mm1("train", str(trial), cwd=tmp_path)
    assert result.returncode == 2
    assert "model.connector.num_tokens: avg-pool cannot give 7 tokens" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_bad_option_is_one_line(tmp_path: Path, write_yaml):
    result = run_mm1("sweep", "run", str(write_yaml(GOOD)), "--max-concurrent", "zero", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_validate_and_plan_json(write_yaml, tmp_path: Path):
    spec = write_yaml(GOOD)
    assert json.loads(run_mm1("sweep", "validate", "--json", str(spec), cwd=tmp_path).stdout) == {"trials": 2}
    plan = json.loads(run_mm1("sweep", "plan", "--json", str(spec), cwd=tmp_path).stdout)
    assert [p["varied"]["train.lr"] for p in plan] == [1e-3, 3e-3]
    assert len({p["trial_key"] for p in plan}) == 2


def test_set_overrides_the_base_of_every_verb(write_yaml, tmp_path: Path):
    spec = write_yaml(GOOD)
    plain = json.loads(run_mm1("sweep", "plan", "--json", str(spec), cwd=tmp_path).stdout)
    shorter = run_mm1("sweep", "plan", "--json", str(spec), "--set", "train.max_steps=3", cwd=tmp_path)
    assert shorter.returncode == 0, shorter.stderr
    assert {p["trial_key"] for p in json.loads(shorter.stdout)}.isdisjoint(p["trial_key"] for p in plain)
    for verb in ("validate", "plan", "run", "status"):
        result = run_mm1("sweep", verb, str(spec), "--set", "train.lrr=1", "--set", "oops", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [f"mm1: error: {spec}: --set 'oops': expected dotted.path=value"]
        assert not (tmp_path / "mlflow.db").exists()


def test_set_on_a_trial_file_is_checked_before_training(write_yaml, tmp_path: Path):
    trial = write_yaml({"train": {"max_steps": 5}}, "trial.yaml")
    result = run_mm1("train", str(trial), "--set", "train.lrr=1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"mm1: error: {trial}: --set train.lrr: train has no field 'lrr'")
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_mm1("train", str(trial), "--set", "model.connector.num_tokens=7", cwd=tmp_path)
    assert result.returncode == 2 and "model.connector.num_tokens: avg-pool cannot give 7 tokens" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_bad_input_never_imports_ray_torch_or_mlflow(write_yaml, tmp_path: Path):
    """Nothing heavy is started before the input is known to be good."""
    spec = write_yaml(BAD_SPECS["unknown-key"])
    code = (
        f"import sys; from orchestrator.cli import main; rc = main(['sweep', 'run', {str(spec)!r}]); "
        "print(sorted(m for m in ('ray', 'torch', 'mlflow', 'lightning') if m in sys.modules)); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout.strip() == "[]"


def test_registry_lists_every_kind(tmp_path: Path):
    names = json.loads(run_mm1("registry", "--json", cwd=tmp_path).stdout)
    assert {"encoders", "connectors", "decoders", "data_sources", "highres_modes"} <= set(names)
    assert {"avg-pool", "attn-pool", "c-abstractor"} <= set(names["connectors"])
    assert {"vit-tiny", "vit-l-14", "vit-h-14"} <= set(names["encoders"])
    assert names["encoders"]["vit-h-14"]["width"] == 1280 and names["encoders"]["vit-h-14"]["patch"] == 14
    assert {"lm-tiny", "lm-9m", "lm-85m", "lm-302m", "lm-1.2b"} <= set(names["decoders"])
    assert names["highres_modes"] == ["none", "interpolate", "subimage"]
    assert "synthetic" in names["data_sources"]
    assert names["data_formats"]["caption"] == {".tar": "webdataset", ".json": "coco"}
    text = run_mm1("registry", cwd=tmp_path).stdout
    assert "c-abstractor" in text and "vit-h-14" in text
