"""Pretrained parts from local paths through the real CLI: a Hugging Face CLIP vision tower and a Llama-style
LM saved to disk (tiny, random), trained on as `from-checkpoint` components; missing files are bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import run_mm1

transformers = pytest.importorskip("transformers")


def save_tiny_checkpoints(root: Path) -> tuple[Path, Path]:
    vision = transformers.CLIPVisionModel(
        transformers.CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    )
    language = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=512,
        )
    )
    vision.save_pretrained(root / "clip")
    language.save_pretrained(root / "llama")
    return root / "clip", root / "llama"


@pytest.mark.slow
def test_train_from_local_checkpoints(tmp_path: Path) -> None:
    save_tiny_checkpoints(tmp_path)
    trial = {
        "model": {
            "encoder": {"name": "from-checkpoint", "checkpoint": "clip", "resolution": 64},  # made at 32: interpolated
            "connector": {"type": "attn-pool", "num_tokens": 4},
            "decoder": {"name": "from-checkpoint", "checkpoint": "llama"},
        },
        "train": {"max_steps": 4, "batch_size": 4, "log_every_n_steps": 2},
        "eval": {"shots": [0], "num_examples": 2, "max_new_tokens": 3},
    }
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(trial))
    db = tmp_path / "store.db"
    result = run_mm1("train", "trial.yaml", "--tracking-uri", f"sqlite:///{db}", "--experiment", "ckpt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("ckpt").experiment_id])
    params = run.data.params
    assert run.info.status == "FINISHED"
    assert params["model.encoder.checkpoint"] == str(tmp_path / "clip")  # resolved before the trial starts
    assert (
        int(params["model.decoder.non_embedding_params"]) == 2 * (2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32) + 32
    )
    assert int(params["model.decoder.params"]) == int(params["model.decoder.non_embedding_params"]) + 2 * 512 * 32


def test_missing_checkpoint_is_bad_input_and_starts_nothing(tmp_path: Path) -> None:
    spec = {"name": "x", "base": {"model": {"encoder": {"checkpoint": "no/such/clip"}}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = run_mm1("sweep", "run", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("mm1: error: spec.yaml: base.model.encoder.checkpoint: ")
    assert "no/such/clip" in line and "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".mm1").exists()


def test_checkpoint_of_another_shape_than_the_preset_is_bad_input(tmp_path: Path) -> None:
    save_tiny_checkpoints(tmp_path)
    spec = {"name": "x", "base": {"model": {"decoder": {"name": "lm-tiny", "checkpoint": "llama"}}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = run_mm1("sweep", "validate", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        "base.model.decoder.checkpoint: " in result.stderr
        and "width 32 in the checkpoint, 128 in lm-tiny" in result.stderr
    )
