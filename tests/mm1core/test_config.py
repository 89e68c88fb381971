"""The model section of a trial config: every architecture axis reachable from YAML, and its errors by path."""

from __future__ import annotations

import pytest

from mm1core.config import TrialConfig, path_problem
from mm1core.data.tokenizer import build_tokenizer
from mm1core.preflight import check_trial


def errors(model: dict) -> str:
    """What validation and the preflight (which reads the files a config names) find, one line a problem."""
    config, problems = check_trial({"model": model})
    assert config is None, f"{model} passed"
    return "\n".join(problems)


def model_of(model: dict) -> TrialConfig:
    return TrialConfig.model_validate({"model": model})


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"encoder": {"resolution": 36}}, "model.encoder.resolution: 36 is not divisible by vit-tiny's patch size 8"),
        ({"encoder": {"name": "vit-huge"}}, "model.encoder.name: 'vit-huge' is not one of vit-tiny"),
        ({"encoder": {"name": "from-checkpoint"}}, "model.encoder.checkpoint: name from-checkpoint needs a checkpoint"),
        ({"decoder": {"name": "from-checkpoint"}}, "model.decoder.checkpoint: name from-checkpoint needs a checkpoint"),
        ({"encoder": {"checkpoint": "/nonexistent/clip"}}, "model.encoder.checkpoint: "),
        ({"decoder": {"checkpoint": "/nonexistent/llama"}}, "model.decoder.checkpoint: "),
        ({"connector": {"type": "avg-pool", "num_tokens": 6}}, "model.connector.num_tokens: avg-pool cannot give 6"),
        ({"connector": {"type": "c-abstractor", "num_tokens": 64}}, "model.connector.num_tokens: c-abstractor cannot"),
        ({"connector": {"type": "attn-pool", "num_tokens": 17}}, "model.connector.num_tokens: attn-pool cannot give"),
        ({"decoder": {"moe": {"num_experts": 2, "top_k": 3}}}, "model.decoder.moe: top_k 3 is more than num_experts 2"),
        ({"decoder": {"moe": {"every_k_layers": 3}}}, "model.decoder.moe.every_k_layers: 3 is more than lm-tiny's 2"),
        ({"decoder": {"moe": {"num_expert": 4}}}, "model.decoder.moe.num_expert: unknown key"),
        ({"highres": {"mode": "interpolate"}}, "model.highres.resolution: mode interpolate needs the image resolution"),
        ({"highres": {"resolution": 64}}, "model.highres.resolution: only used with mode interpolate or subimage"),
        ({"highres": {"mode": "subimage", "resolution": 60, "grid": 2}}, "model.highres.resolution: views of 30 px"),
        ({"highres": {"mode": "tiles", "resolution": 64}}, "model.highres.mode: Input should be 'none'"),
    ],
)
def test_bad_model_sections_name_the_field(model: dict, expected: str) -> None:
    assert expected in errors(model)


def test_highres_modes_set_what_the_data_renders_and_the_encoder_sees() -> None:
    base = {"encoder": {"resolution": 32}, "connector": {"num_tokens": 4}}
    plain = model_of(base).model
    assert (plain.image_resolution, plain.view_resolution, plain.tokens_per_image) == (32, 32, 4)
    interpolate = model_of({**base, "highres": {"mode": "interpolate", "resolution": 64}}).model
    assert (interpolate.image_resolution, interpolate.view_resolution, interpolate.tokens_per_image) == (64, 64, 4)
    subimage = model_of({**base, "highres": {"mode": "subimage", "resolution": 64, "grid": 2}}).model
    assert (subimage.image_resolution, subimage.view_resolution, subimage.tokens_per_image) == (64, 32, 20)


def test_token_counts_are_checked_against_the_grid_the_encoder_sees() -> None:
    # 32 px with patch 8 is a 4x4 grid: 64 tokens are impossible there, possible at an interpolated 64 px.
    assert "cannot give 64" in errors({"encoder": {"resolution": 32}, "connector": {"num_tokens": 64}})
    model_of(
        {
            "encoder": {"resolution": 32},
            "connector": {"num_tokens": 64},
            "highres": {"mode": "interpolate", "resolution": 64},
        }
    )


def test_sections_are_values_and_sections_for_sweep_paths() -> None:
    assert path_problem(TrialConfig, "model.decoder.moe") is None  # grid over [null, {num_experts: 4}]
    assert path_problem(TrialConfig, "model.highres") is None
    assert path_problem(TrialConfig, "model.decoder.moe.num_experts") is None
    assert "has no field 'experts'" in str(path_problem(TrialConfig, "model.decoder.moe.experts"))


def test_moe_fields_flatten_into_params_and_change_the_trial_key() -> None:
    dense, sparse = model_of({}), model_of({"decoder": {"moe": {"num_experts": 4}}})
    assert sparse.flat_params()["model.decoder.moe.num_experts"] == 4
    assert sparse.flat_params()["model.decoder.moe.top_k"] == 2
    assert dense.flat_params()["model.decoder.moe"] is None
    assert dense.trial_key() != sparse.trial_key()


def test_parameter_counts_split_by_component_and_count_moe_experts() -> None:
    vocab = build_tokenizer().vocab_size
    dense = model_of({}).model.parameter_counts(vocab)
    sparse = model_of({"decoder": {"moe": {"num_experts": 4, "every_k_layers": 1}}}).model.parameter_counts(vocab)
    assert dense["model.total_params"] == sum(
        dense[f"model.{part}.params"] for part in ("encoder", "connector", "decoder")
    )
    assert dense["model.decoder.active_non_embedding_params"] == dense["model.decoder.non_embedding_params"]
    assert sparse["model.decoder.non_embedding_params"] > sparse["model.decoder.active_non_embedding_params"]
    assert sparse["model.decoder.active_non_embedding_params"] > dense["model.decoder.non_embedding_params"]
