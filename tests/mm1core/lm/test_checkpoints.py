"""Hugging Face Llama checkpoints: logits parity after loading (GQA, tied and untied, sharded and .bin), problems."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mm1core.lm import DECODERS, FROM_CHECKPOINT, checkpoint_problem, preset_from_checkpoint
from mm1core.lm.checkpoints import decoder_state
from mm1core.lm.decoder import build_decoder, load_decoder

transformers = pytest.importorskip("transformers")

VOCAB = 64


def save_llama(directory: Path, *, tied: bool, **shape) -> transformers.LlamaForCausalLM:
    """A random tiny Llama (GQA by default) saved with ``save_pretrained``; every weight, norms included, random."""
    config = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
        "tie_word_embeddings": tied,
        "max_position_embeddings": 256,
        **shape,
    }
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(
                1 + 0.1 * torch.randn_like(parameter) if "norm" in name else 0.2 * torch.randn_like(parameter)
            )
    model.save_pretrained(directory)
    return model


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def llama(request, tmp_path_factory) -> tuple[Path, transformers.LlamaForCausalLM]:
    directory = tmp_path_factory.mktemp("tied" if request.param else "untied")
    return directory, save_llama(directory, tied=request.param)


def hf_logits(model: transformers.LlamaForCausalLM, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_loaded_decoder_gives_the_checkpoints_logits(llama) -> None:
    directory, model = llama
    decoder = load_decoder(directory).eval()
    assert decoder.preset.num_kv_heads == 2 and decoder.preset.rope_theta == 500000.0
    assert (decoder.output is None) == model.config.tie_word_embeddings
    ids = torch.randint(0, VOCAB, (2, 11))
    with torch.no_grad():
        ours = decoder(decoder.embed(ids))
    torch.testing.assert_close(ours, hf_logits(model, ids), atol=1e-5, rtol=1e-5)


def test_loaded_decoder_trains(llama) -> None:
    decoder = load_decoder(llama[0])
    assert all(parameter.requires_grad and not parameter.is_meta for parameter in decoder.parameters())
    assert not decoder.rotary.inv_freq.is_meta
    decoder(decoder.embed(torch.randint(0, VOCAB, (1, 5)))).sum().backward()
    assert decoder.token_embedding.weight.grad is not None


def test_sharded_safetensors_and_pytorch_bin_load_the_same(llama, tmp_path: Path) -> None:
    directory, model = llama
    sharded, binary = tmp_path / "sharded", tmp_path / "binary"
    model.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    binary.mkdir()
    shutil.copy(directory / "config.json", binary)
    torch.save(model.state_dict(), binary / "pytorch_model.bin")
    ids = torch.randint(0, VOCAB, (1, 7))
    expected = hf_logits(model, ids)
    for path in (sharded, binary):
        decoder = load_decoder(path).eval()
        with torch.no_grad():
            torch.testing.assert_close(decoder(decoder.embed(ids)), expected, atol=1e-5, rtol=1e-5)


def test_build_from_checkpoint_keeps_the_checkpoint_vocabulary(llama) -> None:
    decoder = build_decoder(FROM_CHECKPOINT, 10, checkpoint=str(llama[0]))
    assert decoder.token_embedding.num_embeddings == VOCAB
    bigger = load_decoder(llama[0], vocab_size=VOCAB + 6)
    assert bigger.token_embedding.num_embeddings == VOCAB + 6
    torch.testing.assert_close(bigger.token_embedding.weight[:VOCAB], load_decoder(llama[0]).token_embedding.weight)


def test_preset_from_checkpoint_reads_the_shape(llama) -> None:
    preset = preset_from_checkpoint(llama[0])
    assert (preset.width, preset.depth, preset.heads, preset.num_kv_heads, preset.mlp_hidden) == (32, 2, 4, 2, 48)
    assert (preset.norm_eps, preset.max_seq_len) == (1e-5, 256)


def test_a_checkpoint_of_a_presets_shape_loads_under_its_name(tmp_path: Path) -> None:
    nano = DECODERS.get("lm-nano")
    model = save_llama(
        tmp_path,
        tied=True,
        hidden_size=64,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=nano.mlp_hidden,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    assert checkpoint_problem(tmp_path, "lm-nano") is None
    decoder = build_decoder("lm-nano", VOCAB, checkpoint=str(tmp_path)).eval()
    assert decoder.preset is nano
    ids = torch.randint(0, VOCAB, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(decoder(decoder.embed(ids)), hf_logits(model, ids), atol=1e-5, rtol=1e-5)


def test_checkpoint_problems_are_named(llama, tmp_path: Path) -> None:
    directory = llama[0]
    assert "is not a directory" in checkpoint_problem(tmp_path / "nope", FROM_CHECKPOINT)
    assert "has no config.json" in checkpoint_problem(tmp_path, FROM_CHECKPOINT)
    assert checkpoint_problem(directory, FROM_CHECKPOINT) is None
    problem = checkpoint_problem(directory, "lm-tiny")
    assert "width 32 in the checkpoint, 128 in lm-tiny" in problem
    assert "kv_heads 2 in the checkpoint, 4 in lm-tiny" in problem
    assert "is not one of lm-tiny" in checkpoint_problem(directory, "gpt-9")
    with pytest.raises(ValueError, match="width 32 in the checkpoint"):
        build_decoder("lm-tiny", VOCAB, checkpoint=str(directory))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}, "RoPE scaling 'linear'"),
        (
            {"rope_parameters": None, "rope_theta": 1e4, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
            "RoPE scaling 'dynamic'",
        ),
        ({"attention_bias": True}, "attention_bias is set"),
        ({"model_type": "qwen2"}, "q/k/v projection biases"),
        ({"model_type": "gpt2"}, "is not one of llama, mistral"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"head_dim": 16}, "head_dim 16"),
    ],
    ids=["rope-scaling", "rope-scaling-4x", "attention-bias", "qwen2", "gpt2", "gelu", "head-dim"],
)
def test_unsupported_configs_are_reported(llama, tmp_path: Path, change: dict, expected: str) -> None:
    config = json.loads((llama[0] / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert expected in checkpoint_problem(tmp_path, FROM_CHECKPOINT)
    with pytest.raises(ValueError, match=expected.split("'")[0]):
        preset_from_checkpoint(tmp_path)


def test_mistral_sliding_window_caps_the_sequence_length(llama, tmp_path: Path) -> None:
    config = json.loads((llama[0] / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "mistral", "sliding_window": 128}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert preset_from_checkpoint(tmp_path).max_seq_len == 128


def test_weight_names_map_strictly() -> None:
    weights = {"model.embed_tokens.weight": torch.zeros(1), "model.norm.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="missing"):
        decoder_state(weights, depth=1, tied=True)
    with pytest.raises(ValueError, match="unknown .*model.layers.0.self_attn.q_proj.bias"):
        decoder_state({**weights, "model.layers.0.self_attn.q_proj.bias": torch.zeros(1)}, depth=1, tied=True)
