"""LM presets: closed-form parameter counts against instantiated (meta) models, paper sizes, FLOPs, tiny flavours."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mm1core.lm import DECODERS, FROM_CHECKPOINT, LMPreset, MoEConfig
from mm1core.lm.decoder import Decoder

NAMES = DECODERS.names()
VOCAB = 1000
MOE = MoEConfig(num_experts=4, every_k_layers=2, top_k=2)

# MM1 Sec. 3.4 LR grid (non-embedding N) and the final LLM sizes (Sec. 4): within 3% and 10%.
PAPER_SIZES = {
    "lm-9m": (9e6, 0.03),
    "lm-85m": (85e6, 0.03),
    "lm-302m": (302e6, 0.03),
    "lm-1.2b": (1.2e9, 0.03),
    "lm-3b": (3e9, 0.10),
    "lm-7b": (7e9, 0.10),
    "lm-30b": (30e9, 0.10),
}


def meta_decoder(preset: LMPreset, moe: MoEConfig | None = None) -> Decoder:
    with torch.device("meta"):  # shapes only: a 30B model costs no memory
        return Decoder(preset, VOCAB, moe)


@pytest.mark.parametrize("moe", [None, MOE], ids=["dense", "moe"])
@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_parameter_count_is_the_closed_form(name: str, moe: MoEConfig | None) -> None:
    preset = DECODERS.get(name)
    decoder = meta_decoder(preset, moe)
    total = sum(parameter.numel() for parameter in decoder.parameters())
    assert decoder.non_embedding_params() == preset.non_embedding_params(moe)
    assert total == preset.non_embedding_params(moe) + preset.embedding_params(VOCAB)
    assert (decoder.output is None) == preset.tie_embeddings


@pytest.mark.parametrize("name", list(PAPER_SIZES), ids=list(PAPER_SIZES))
def test_paper_presets_land_near_the_paper_sizes(name: str) -> None:
    size, tolerance = PAPER_SIZES[name]
    assert abs(DECODERS.get(name).non_embedding_params() / size - 1) < tolerance
    assert DECODERS.get(name).max_seq_len == 4096


def test_active_params_count_top_k_experts() -> None:
    preset = LMPreset(width=64, depth=4, heads=4)
    dense, expert = preset.non_embedding_params(), preset.mlp_params()
    moe_layers, router = 2, 64 * MOE.num_experts
    assert preset.non_embedding_params(MOE) == dense + moe_layers * ((MOE.num_experts - 1) * expert + router)
    assert preset.active_non_embedding_params(MOE) == dense + moe_layers * ((MOE.top_k - 1) * expert + router)
    assert preset.active_non_embedding_params() == dense


def test_flops_per_token_by_hand() -> None:
    preset = LMPreset(width=64, depth=2, heads=4, mlp_width=128)
    block = 2 * 64 + 4 * 64 * 64 + 3 * 64 * 128
    n = 2 * block + 64
    forward = 2 * n + 2 * 64 * 100 + 4 * 2 * 256 * 64  # weights, head, QK^T + AV over 256 positions
    assert preset.flops_per_token(256, 100, training=False) == forward
    assert preset.flops_per_token(256, 100) == 3 * forward
    assert preset.flops_per_token(256, 100, MOE) > preset.flops_per_token(256, 100)


def test_default_mlp_width_is_eight_thirds_rounded_up_to_64() -> None:
    assert LMPreset(width=768, depth=1, heads=12).mlp_hidden == 2048
    assert LMPreset(width=1024, depth=1, heads=16).mlp_hidden == 2752


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_tiny_flavour_keeps_the_style(name: str) -> None:
    preset, tiny = DECODERS.get(name), DECODERS.get(name).tiny()
    assert (tiny.width, tiny.depth, tiny.heads) == (32, 2, 4)
    assert tiny.tie_embeddings == preset.tie_embeddings
    assert (tiny.num_kv_heads < tiny.heads) == (preset.num_kv_heads < preset.heads)


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        LMPreset(width=100, depth=1, heads=3)
    with pytest.raises(ValueError, match="kv heads"):
        LMPreset(width=64, depth=1, heads=4, kv_heads=3)


def test_from_checkpoint_is_not_a_preset() -> None:
    assert FROM_CHECKPOINT not in DECODERS
    with pytest.raises(ValueError, match="already registered"):
        DECODERS.register("lm-tiny", LMPreset(width=64, depth=1, heads=2))


def test_presets_and_checkpoint_configs_import_no_torch() -> None:
    code = "import sys, mm1core.lm, mm1core.lm.checkpoints, mm1core.lm.presets; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
