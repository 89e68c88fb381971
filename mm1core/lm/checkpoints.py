"""A local Hugging Face Llama-style causal LM as a ``Decoder``: its shape from ``config.json``, its weights by a
strict name mapping. Nothing here downloads anything.

Supported: ``model_type`` llama or mistral (a mistral sliding window caps ``max_seq_len``, within which full
attention is the same), SiLU, no biases, default RoPE, ``head_dim = hidden_size / num_attention_heads``.
Weights from ``model.safetensors``, a sharded ``model.safetensors.index.json``, or ``pytorch_model.bin``
(sharded or not). ``checkpoint_problem`` and ``preset_from_checkpoint`` read only ``config.json`` and import
no torch, so a sweep validates its trials without it; ``decoder_weights`` imports torch when called, and
``mm1core.lm.decoder.load_decoder`` builds the module from them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mm1core.lm.presets import DECODERS, FROM_CHECKPOINT, LMPreset

if TYPE_CHECKING:
    import torch

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
_WHY_NOT = {"qwen2": "has q/k/v projection biases", "qwen3": "normalises queries and keys", "gemma": "uses GeGLU MLPs"}
_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Hugging Face name -> ours, per layer (``model.layers.{i}.<hf>.weight`` -> ``blocks.{i}.<ours>.weight``).
_LAYER_NAMES = {
    "input_layernorm": "attention_norm",
    "self_attn.q_proj": "attention.query",
    "self_attn.k_proj": "attention.key",
    "self_attn.v_proj": "attention.value",
    "self_attn.o_proj": "attention.output",
    "post_attention_layernorm": "mlp_norm",
    "mlp.gate_proj": "mlp.gate",
    "mlp.up_proj": "mlp.up",
    "mlp.down_proj": "mlp.down",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embedding.weight",
    "model.norm.weight": "final_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_KEY = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight")
_IGNORED_KEY = re.compile(r".*rotary_emb\.inv_freq")  # a buffer old checkpoints saved; recomputed here


# ---------------------------------------------------------------------------------------- config.json
def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(Path(path) / "config.json") as file:
        return json.load(file)


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """RoPE theta and type, from ``rope_parameters`` (transformers 5) or ``rope_theta`` / ``rope_scaling`` (4.x);
    the type is the first that is not ``default``."""
    parameters, scaling = config.get("rope_parameters") or {}, config.get("rope_scaling") or {}
    types = [parameters.get("rope_type", "default"), scaling.get("rope_type", scaling.get("type", "default"))]
    return {
        "rope_theta": parameters.get("rope_theta", config.get("rope_theta", 10000.0)),
        "rope_type": next((kind for kind in types if kind != "default"), "default"),
    }


def config_problem(config: dict[str, Any]) -> str | None:
    """Why this decoder cannot reproduce the model ``config`` describes (``None`` when it can)."""
    model_type = config.get("model_type")
    if model_type in _WHY_NOT:
        return f"model_type {model_type!r} {_WHY_NOT[model_type]}, which this decoder does not"
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model_type {model_type!r} is not one of {', '.join(SUPPORTED_MODEL_TYPES)}"
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        return f"config.json lacks {', '.join(missing)}"
    if _rope(config)["rope_type"] != "default" or config.get("partial_rotary_factor", 1.0) != 1.0:
        return f"RoPE scaling {_rope(config)['rope_type']!r} is not supported (only default RoPE)"
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            return f"{flag} is set; this decoder has no biases"
    if config.get("hidden_act", "silu") != "silu":
        return f"hidden_act {config['hidden_act']!r} is not supported (only silu)"
    head_dim = config.get("head_dim")
    if head_dim is not None and head_dim != config["hidden_size"] // config["num_attention_heads"]:
        return f"head_dim {head_dim} is not hidden_size / num_attention_heads"
    try:
        preset_from_config(config)
    except ValueError as error:
        return str(error)
    return None


def _sliding_window(config: dict[str, Any]) -> int | None:
    """Mistral's attention window, within which its attention equals full causal attention."""
    if config.get("sliding_window") and config.get("use_sliding_window", True):
        return int(config["sliding_window"])
    return None


def preset_from_config(config: dict[str, Any]) -> LMPreset:
    """The ``LMPreset`` of a supported ``config.json`` (see ``config_problem``); ``max_seq_len`` is
    ``max_position_embeddings``, capped at a mistral sliding window."""
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads")
    max_seq_len = min(config.get("max_position_embeddings", 2048), _sliding_window(config) or float("inf"))
    return LMPreset(
        width=config["hidden_size"],
        depth=config["num_hidden_layers"],
        heads=heads,
        kv_heads=None if kv_heads in (None, heads) else kv_heads,
        mlp_width=config["intermediate_size"],
        norm_eps=config.get("rms_norm_eps", 1e-6),
        rope_theta=float(_rope(config)["rope_theta"]),
        tie_embeddings=config.get("tie_word_embeddings", False),
        max_seq_len=int(max_seq_len),
    )


def checkpoint_problem(path: str | os.PathLike[str], name: str) -> str | None:
    """Why decoder ``name`` (a ``DECODERS`` entry, or ``FROM_CHECKPOINT``) cannot load the checkpoint at
    ``path``, or ``None``: a missing directory, config.json or weights file, an unsupported architecture, or
    for a registered preset each field that differs, e.g. ``width 64 in the checkpoint, 128 in lm-tiny``."""
    directory = Path(path)
    if not directory.is_dir():
        return f"checkpoint {str(path)!r} is not a directory"
    if not (directory / "config.json").is_file():
        return f"checkpoint {str(path)!r} has no config.json"
    if not any((directory / file).is_file() for file in _WEIGHT_FILES):
        return f"checkpoint {str(path)!r} has none of {', '.join(_WEIGHT_FILES)}"
    try:
        config = read_config(directory)
    except json.JSONDecodeError as error:
        return f"checkpoint {str(path)!r}: config.json is not valid JSON ({error})"
    problem = config_problem(config)
    if problem or name == FROM_CHECKPOINT:
        return problem
    if name not in DECODERS:
        return DECODERS.unknown_message(name)
    return preset_mismatch(config, DECODERS.get(name), name)


def preset_mismatch(config: dict[str, Any], wanted: LMPreset, name: str) -> str | None:
    """Each field (but ``max_seq_len``) in which the shape ``config`` describes differs from preset ``name``,
    and a sliding window shorter than the preset's ``max_seq_len``."""
    found, differences = preset_from_config(config), []
    for field in fields(LMPreset):
        attribute = {"kv_heads": "num_kv_heads", "mlp_width": "mlp_hidden"}.get(field.name, field.name)
        theirs, ours = getattr(found, attribute), getattr(wanted, attribute)
        if field.name != "max_seq_len" and theirs != ours:
            differences.append(f"{field.name} {theirs} in the checkpoint, {ours} in {name}")
    window = _sliding_window(config)
    if window is not None and window < wanted.max_seq_len:
        differences.append(f"sliding_window {window} in the checkpoint, max_seq_len {wanted.max_seq_len} in {name}")
    return "; ".join(differences) or None


def preset_from_checkpoint(path: str | os.PathLike[str]) -> LMPreset:
    """The architecture of the checkpoint at ``path``; ``ValueError`` with ``checkpoint_problem``'s reason."""
    problem = checkpoint_problem(path, FROM_CHECKPOINT)
    if problem:
        raise ValueError(problem)
    return preset_from_config(read_config(path))


# -------------------------------------------------------------------------------------------- weights
def decoder_weights(
    path: str | os.PathLike[str],
    vocab_size: int | None = None,
    *,
    preset: LMPreset | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[LMPreset, int, dict[str, torch.Tensor]]:
    """What ``mm1core.lm.decoder.load_decoder`` builds a ``Decoder`` from: the checkpoint's shape (or ``preset``,
    which must match it), the vocabulary size and the state dict under ``Decoder`` names, cast to ``dtype``
    (default fp32).

    ``vocab_size`` ``None`` keeps the checkpoint's; another size keeps the first ``min(V, V_ckpt)`` rows of
    the embedding (and untied head) and initialises any new rows N(0, 0.02), as ``resize_token_embeddings``.
    """
    import torch

    found, config = preset_from_checkpoint(path), read_config(path)
    problem = None if preset is None else preset_mismatch(config, preset, "the given preset")
    if problem:
        raise ValueError(f"checkpoint {str(path)!r}: {problem}")
    preset = preset or found
    checkpoint_vocab = config["vocab_size"]
    state = decoder_state(read_weights(path), preset.depth, preset.tie_embeddings)
    state = {key: value.to(dtype or torch.float32) for key, value in state.items()}
    vocab_size = vocab_size or checkpoint_vocab
    if vocab_size != checkpoint_vocab:
        state = resize_vocab(state, vocab_size)
    return preset, vocab_size, state


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint, by its Hugging Face name, on the CPU."""
    from safetensors.torch import load_file

    from mm1core.weights import load_weights

    directory = Path(path)
    for index_name, single_name in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        if (directory / index_name).is_file():
            with open(directory / index_name) as file:
                shards = sorted(set(json.load(file)["weight_map"].values()))
        elif (directory / single_name).is_file():
            shards = [single_name]
        else:
            continue
        if single_name.endswith(".safetensors"):
            return {key: value for shard in shards for key, value in load_file(directory / shard).items()}
        loaded = (load_weights(directory / shard) for shard in shards)  # weights_only: no code runs
        return {key: value for shard in loaded for key, value in shard.items()}
    raise FileNotFoundError(f"checkpoint {str(path)!r} has none of {', '.join(_WEIGHT_FILES)}")


def decoder_state(weights: dict[str, torch.Tensor], depth: int, tied: bool) -> dict[str, torch.Tensor]:
    """Hugging Face names -> ``Decoder`` names. Strict: an unknown name, or a missing one, raises; a tied
    checkpoint's ``lm_head.weight`` (a copy of the embedding, when saved at all) is skipped."""
    state, unknown = {}, []
    for key, value in weights.items():
        if _IGNORED_KEY.fullmatch(key) or (tied and key == "lm_head.weight"):
            continue
        ours = _decoder_name(key, depth)
        if ours is None:
            unknown.append(key)
        else:
            state[ours] = value
    expected = set(_GLOBAL_NAMES.values()) - ({"output.weight"} if tied else set())
    expected |= {f"blocks.{i}.{name}.weight" for i in range(depth) for name in _LAYER_NAMES.values()}
    missing = sorted(expected - set(state))
    if unknown or missing:
        raise ValueError(f"checkpoint names do not map: unknown {sorted(unknown)[:8]}, missing {missing[:8]}")
    return state


def _decoder_name(key: str, depth: int) -> str | None:
    if key in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[key]
    match = _LAYER_KEY.fullmatch(key)
    if match is None or int(match[1]) >= depth or match[2] not in _LAYER_NAMES:
        return None
    return f"blocks.{match[1]}.{_LAYER_NAMES[match[2]]}.weight"


def resize_vocab(state: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    """The embedding (and untied head) cut or grown to ``vocab_size`` rows; new rows N(0, 0.02)."""
    import torch

    resized = dict(state)
    for key in ("token_embedding.weight", "output.weight"):
        if key in state:
            old = state[key]
            new = torch.empty(vocab_size, old.shape[1], dtype=old.dtype).normal_(std=0.02)
            keep = min(vocab_size, old.shape[0])
            new[:keep] = old[:keep]
            resized[key] = new
    return resized
