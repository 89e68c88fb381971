"""Pretrained ViT weights from local paths: HF CLIP, HF SigLIP and OpenCLIP checkpoints (nothing is downloaded).

Formats (``detect_format``):

- ``hf-clip``: a directory saved by ``CLIPVisionModel.save_pretrained`` or a full ``CLIPModel``'s (config.json
  ``model_type`` ``clip_vision_model``, or ``clip`` with a ``vision_config``). The encoder returns what HF's
  ``last_hidden_state[:, 1:]`` holds: no ``post_layernorm`` (``post_norm=False``), unless a named preset asks
  for it.
- ``hf-siglip``: ``SiglipVisionModel`` or a full ``SiglipModel`` (``siglip_vision_model`` / ``siglip``); the
  attention-pooling head is ignored; the encoder returns HF's ``last_hidden_state`` (post-LayerNorm applied).
- ``open-clip``: a ``.pt``/``.bin``/``.pth``/``.safetensors`` file holding an OpenCLIP (or original OpenAI CLIP)
  state dict (``visual.conv1.weight``, ``visual.transformer.resblocks.{i}.attn.in_proj_weight``, ...; with or
  without the ``visual.`` prefix, possibly wrapped as ``{"state_dict": ...}`` with ``module.`` prefixes), or a
  directory holding ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin`` (the HF hub layout of
  OpenCLIP models, e.g. DFN5B-CLIP-ViT-H-14-378). OpenCLIP's token output is ``ln_post`` applied to every token
  (``post_norm=True``).

An OpenCLIP state dict does not say which activation or how many heads it was trained with: ``in_proj_weight``
is ``(3C, C)`` whatever the head count. When an ``open_clip_config.json`` lies beside the weights, its
``head_width`` and ``quick_gelu`` decide. Otherwise a named preset's ``heads`` and ``activation`` win (so name
``vit-h-14``, QuickGELU, for DFN-5B's weights and ``vit-l-14`` for OpenAI's), and ``FROM_CHECKPOINT`` assumes
GELU (OpenCLIP's default, e.g. LAION's models) with 16 heads from width 1024 up, else ``width // 64`` (OpenCLIP's
``head_width`` 64), which reproduces every OpenCLIP ViT config (S, M, B, L, H, g, bigG).

Reading a preset is torch-free for HF directories (config.json) and OpenCLIP ``.safetensors`` files (the
header); OpenCLIP ``.pt`` files are memory-mapped with ``torch.load(weights_only=True, mmap=True)``. Loading is
strict both ways: every encoder weight must come from the checkpoint, and every checkpoint weight of the vision
tower must be used or be a known head (projection, pooling) that the encoder does not have.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mm1core.vision.presets import ENCODERS, FROM_CHECKPOINT, ViTPreset

if TYPE_CHECKING:
    import torch

OPEN_CLIP_SUFFIXES = (".pt", ".bin", ".pth", ".safetensors")
_OPEN_CLIP_DIRECTORY_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_HF_MODEL_TYPES = {
    "clip": "hf-clip",
    "clip_vision_model": "hf-clip",
    "siglip": "hf-siglip",
    "siglip_vision_model": "hf-siglip",
}
# The output LayerNorm is a choice of output, not of weights (both formats store it): never a mismatch.
_COMPARED_FIELDS = tuple(field.name for field in fields(ViTPreset) if field.name != "post_norm")


@dataclass(frozen=True)
class _Inspection:
    """What a checkpoint says about its encoder; ``known`` are the preset fields it determines (the others are
    guesses that a named preset overrides)."""

    path: Path
    format: str
    preset: ViTPreset
    resolution: int
    known: frozenset[str]


# ----------------------------------------------------------------------------------------------- public API
def detect_format(path: str | Path) -> str:
    """``hf-clip``, ``hf-siglip`` or ``open-clip``; raises FileNotFoundError or ValueError (with the reason)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_file():
        if path.suffix in OPEN_CLIP_SUFFIXES:
            return "open-clip"
        raise ValueError(f"checkpoint {path}: a file must be an OpenCLIP state dict ({', '.join(OPEN_CLIP_SUFFIXES)})")
    config = path / "config.json"
    if config.is_file():
        model_type = json.loads(config.read_text()).get("model_type")
        if model_type not in _HF_MODEL_TYPES:
            raise ValueError(f"checkpoint {path}: config.json model_type {model_type!r} is not one of {_hf_types()}")
        return _HF_MODEL_TYPES[model_type]
    if _open_clip_directory_file(path) is not None:
        return "open-clip"
    raise ValueError(
        f"checkpoint {path}: a directory needs an HF config.json ({_hf_types()}) "
        f"or an OpenCLIP weights file ({', '.join(_OPEN_CLIP_DIRECTORY_FILES)})"
    )


def preset_from_checkpoint(path: str | Path) -> tuple[ViTPreset, int]:
    """The checkpoint's encoder preset and native resolution (the positional embeddings' grid times the patch;
    e.g. 378 for SigLIP SO400M/14, which HF configures at 384 but which sees a 27x27 grid)."""
    inspection = _inspect(Path(path))
    return inspection.preset, inspection.resolution


def checkpoint_problem(path: str, name: str) -> str | None:
    """Why ``vit.load_encoder(path, ..., name)`` would fail, or None: a missing path, an unknown format, an unknown
    name, or for a registered name each field that differs (``"width 32 in the checkpoint, 64 in vit-tiny"``)."""
    try:
        inspection = _inspect(Path(path))
    except (OSError, ValueError, KeyError) as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - a foreign or corrupt file may fail anywhere in the parsing
        first = next((line for line in str(error).splitlines() if line.strip()), "")
        return f"checkpoint {path} cannot be read ({type(error).__name__}: {first})"
    return _name_problem(inspection, name)


def encoder_weights(path: str | Path, name: str = FROM_CHECKPOINT) -> tuple[ViTPreset, int, dict[str, torch.Tensor]]:
    """What ``mm1core.vision.vit.load_encoder`` builds a ``VisionTransformer`` from: the preset (the checkpoint's
    for ``FROM_CHECKPOINT``, else the registered ``name``, which the checkpoint must fit; its style then decides
    the output norm, and for OpenCLIP files the activation and heads), the resolution the checkpoint was made at,
    and the state dict under the encoder's names."""
    inspection = _inspect(Path(path))
    problem = _name_problem(inspection, name)
    if problem:
        raise ValueError(problem)
    preset = inspection.preset if name == FROM_CHECKPOINT else ENCODERS.get(name)
    return preset, inspection.resolution, _encoder_state_dict(inspection, preset)


# ------------------------------------------------------------------------------------------- inspection
def _inspect(path: Path) -> _Inspection:
    return _FORMATS[detect_format(path)].inspect(path)


def _name_problem(inspection: _Inspection, name: str) -> str | None:
    """Why the checkpoint cannot be loaded as encoder ``name``: an unknown name, or each field it determines
    that differs from the registered preset's."""
    if name == FROM_CHECKPOINT:
        return None
    if name not in ENCODERS:
        return ENCODERS.unknown_message(name)
    preset = ENCODERS.get(name)
    differences = [
        f"{field} {getattr(inspection.preset, field)} in the checkpoint, {getattr(preset, field)} in {name}"
        for field in _COMPARED_FIELDS
        if field in inspection.known and getattr(inspection.preset, field) != getattr(preset, field)
    ]
    if not differences:
        return None
    return f"checkpoint {inspection.path} does not fit encoder {name!r}: {'; '.join(differences)}"


def _hf_types() -> str:
    return ", ".join(_HF_MODEL_TYPES)


_HF_ACTIVATIONS = {
    "quick_gelu": "quick_gelu",
    "gelu": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
}
_HF_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}


def _inspect_hf(path: Path, format_name: str, style: dict[str, Any], defaults: dict[str, Any]) -> _Inspection:
    """Torch-free, from config.json (HF ``CLIPVisionConfig`` / ``SiglipVisionConfig``; their defaults fill in
    what an old config leaves out)."""
    _hf_weight_files(path)  # raises if there are no weights beside the config
    config = json.loads((path / "config.json").read_text())
    vision = {**_HF_DEFAULTS, **defaults, **(config.get("vision_config") or config)}
    if vision["hidden_act"] not in _HF_ACTIVATIONS:
        raise ValueError(
            f"checkpoint {path}: hidden_act {vision['hidden_act']!r} is not one of {', '.join(_HF_ACTIVATIONS)}"
        )
    patch = vision["patch_size"]
    preset = ViTPreset(
        width=vision["hidden_size"],
        depth=vision["num_hidden_layers"],
        heads=vision["num_attention_heads"],
        patch=patch,
        mlp_width=vision["intermediate_size"],
        activation=_HF_ACTIVATIONS[vision["hidden_act"]],
        norm_eps=vision["layer_norm_eps"],
        **style,
    )
    resolution = vision["image_size"] // patch * patch  # the largest multiple of the patch HF's conv sees
    return _Inspection(path, format_name, preset, resolution, frozenset(_COMPARED_FIELDS))


def _inspect_open_clip(path: Path) -> _Inspection:
    """From the tensor shapes (torch-free for ``.safetensors``) and, if present, ``open_clip_config.json``."""
    shape = _scoped(_shapes(_open_clip_files(path)), "visual.")
    if "conv1.weight" not in shape or "positional_embedding" not in shape:
        raise ValueError(f"checkpoint {path}: not an OpenCLIP ViT state dict (no visual.conv1.weight)")
    width, patch = shape["conv1.weight"][0], shape["conv1.weight"][-1]  # conv1: (C, 3, p, p)
    class_token = "class_embedding" in shape
    patches = shape["positional_embedding"][0] - class_token  # positional_embedding: (1 + g*g, C)
    grid = round(patches**0.5)
    if grid * grid != patches:
        raise ValueError(f"checkpoint {path}: {patches} patch positions do not form a square grid")
    blocks = {int(match[1]) for key in shape if (match := re.match(r"transformer\.resblocks\.(\d+)\.", key))}
    heads, activation, known = _open_clip_heads(width), "gelu", set(_COMPARED_FIELDS) - {"heads", "activation"}
    config = _open_clip_config(path)
    if config is not None:
        heads = width // config.get("vision_cfg", {}).get("head_width", 64)
        activation = "quick_gelu" if config.get("quick_gelu") else "gelu"
        known |= {"heads", "activation"}
    preset = ViTPreset(
        width=width,
        depth=len(blocks),
        heads=heads,
        patch=patch,
        mlp_width=shape["transformer.resblocks.0.mlp.c_fc.weight"][0],
        class_token=class_token,
        pre_norm="ln_pre.weight" in shape,
        post_norm="ln_post.weight" in shape,
        activation=activation,
        patch_bias="conv1.bias" in shape,
    )
    return _Inspection(path, "open-clip", preset, grid * patch, frozenset(known))


def _open_clip_heads(width: int) -> int:
    """OpenCLIP's head count for a ViT of ``width`` when no config says: 16 from ViT-L up (``head_width`` 64, 80,
    88, 104 for L, H, g, bigG), else ``width // 64`` (S: 6, M: 8, B: 12)."""
    if width >= 1024:
        return 16
    return width // 64 if width % 64 == 0 and width >= 64 else 1


def _open_clip_config(path: Path) -> dict[str, Any] | None:
    """``model_cfg`` of an ``open_clip_config.json`` beside the weights (HF hub layout), or None."""
    config = (path if path.is_dir() else path.parent) / "open_clip_config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    return data.get("model_cfg", data)


# ------------------------------------------------------------------------------------------- weight files
def _hf_weight_files(path: Path) -> list[Path]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return [path / name]
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / name).is_file():
            shards = json.loads((path / name).read_text())["weight_map"].values()
            return [path / shard for shard in sorted(set(shards))]
    raise FileNotFoundError(f"checkpoint {path} holds no model.safetensors or pytorch_model.bin (nor their index)")


def _open_clip_directory_file(path: Path) -> Path | None:
    return next((path / name for name in _OPEN_CLIP_DIRECTORY_FILES if (path / name).is_file()), None)


def _open_clip_files(path: Path) -> list[Path]:
    file = _open_clip_directory_file(path) if path.is_dir() else path
    assert file is not None, "detect_format accepted the directory"
    return [file]


def _safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Torch-free: a safetensors file opens with an 8-byte little-endian header size and a JSON header."""
    with file.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return {key: tuple(entry["shape"]) for key, entry in header.items() if key != "__metadata__"}


def _torch_state(file: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``torch.save``d state dict, memory-mapped, unwrapped from ``{"state_dict": ...}``, with
    DDP's ``module.`` prefixes removed."""
    import torch

    from mm1core.weights import load_weights

    state = load_weights(file, mmap=True)  # weights_only: a checkpoint cannot run code
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {file}: not a state dict (a {type(state).__name__})")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return {key.removeprefix("module."): value for key, value in state.items() if isinstance(value, torch.Tensor)}


def _shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        if file.suffix == ".safetensors":
            shapes |= {key.removeprefix("module."): shape for key, shape in _safetensors_shapes(file).items()}
        else:
            shapes |= {key: tuple(tensor.shape) for key, tensor in _torch_state(file).items()}
    return shapes


def _tensor_loaders(files: list[Path]) -> dict[str, Callable[[], torch.Tensor]]:
    """Key -> a function reading that tensor (safetensors reads only the tensors asked for)."""
    loaders: dict[str, Callable[[], torch.Tensor]] = {}
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            handle = safe_open(str(file), framework="pt", device="cpu")
            loaders |= {key.removeprefix("module."): partial(handle.get_tensor, key) for key in handle.keys()}
        else:
            loaders |= {key: partial(_identity, tensor) for key, tensor in _torch_state(file).items()}
    return loaders


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _scoped(entries: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The vision tower's entries, ``prefix`` removed: those under ``prefix`` when any is (a full CLIP/SigLIP
    model), else all (a vision-only state dict)."""
    if not any(key.startswith(prefix) for key in entries):
        return entries
    return {key.removeprefix(prefix): value for key, value in entries.items() if key.startswith(prefix)}


# ------------------------------------------------------------------------------------------- key mapping
def _pair(ours: str, theirs: str) -> dict[str, tuple[str, ...]]:
    """A weight and a bias under the same names."""
    return {f"{ours}.{kind}": (f"{theirs}.{kind}",) for kind in ("weight", "bias")}


def _embedding_mapping(preset: ViTPreset, names: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Our embedding and norm parameters -> the checkpoint's, for the parts ``preset`` has."""
    mapping = {"patch_embedding.weight": (names["patch"] + ".weight",), "position_embedding": (names["position"],)}
    if preset.patch_bias:
        mapping["patch_embedding.bias"] = (names["patch"] + ".bias",)
    if preset.class_token:
        mapping["class_embedding"] = (names["class"],)
    if preset.pre_norm:
        mapping |= _pair("pre_norm", names["pre_norm"])
    if preset.post_norm:
        mapping |= _pair("post_norm", names["post_norm"])
    return mapping


def _hf_mapping(preset: ViTPreset) -> dict[str, tuple[str, ...]]:
    """Our key -> the HF CLIP/SigLIP keys it is made of (q, k and v projections stacked into ``qkv``)."""
    names = {
        "patch": "embeddings.patch_embedding",
        "position": "embeddings.position_embedding.weight",
        "class": "embeddings.class_embedding",
        "pre_norm": "pre_layrnorm",  # sic, HF's spelling
        "post_norm": "post_layernorm",
    }
    mapping = _embedding_mapping(preset, names)
    for index in range(preset.depth):
        ours, theirs = f"blocks.{index}.", f"encoder.layers.{index}."
        for kind in ("weight", "bias"):
            mapping[f"{ours}attention.qkv.{kind}"] = tuple(f"{theirs}self_attn.{x}_proj.{kind}" for x in "qkv")
        mapping |= _pair(ours + "attention_norm", theirs + "layer_norm1")
        mapping |= _pair(ours + "attention.out", theirs + "self_attn.out_proj")
        mapping |= _pair(ours + "mlp_norm", theirs + "layer_norm2")
        mapping |= _pair(ours + "mlp.fc", theirs + "mlp.fc1")
        mapping |= _pair(ours + "mlp.proj", theirs + "mlp.fc2")
    return mapping


def _open_clip_mapping(preset: ViTPreset) -> dict[str, tuple[str, ...]]:
    """Our key -> the OpenCLIP key (``nn.MultiheadAttention``'s ``in_proj`` is already q, k, v stacked)."""
    names = {
        "patch": "conv1",
        "position": "positional_embedding",
        "class": "class_embedding",
        "pre_norm": "ln_pre",
        "post_norm": "ln_post",
    }
    mapping = _embedding_mapping(preset, names)
    for index in range(preset.depth):
        ours, theirs = f"blocks.{index}.", f"transformer.resblocks.{index}."
        mapping[ours + "attention.qkv.weight"] = (theirs + "attn.in_proj_weight",)
        mapping[ours + "attention.qkv.bias"] = (theirs + "attn.in_proj_bias",)
        mapping |= _pair(ours + "attention_norm", theirs + "ln_1")
        mapping |= _pair(ours + "attention.out", theirs + "attn.out_proj")
        mapping |= _pair(ours + "mlp_norm", theirs + "ln_2")
        mapping |= _pair(ours + "mlp.fc", theirs + "mlp.c_fc")
        mapping |= _pair(ours + "mlp.proj", theirs + "mlp.c_proj")
    return mapping


def _encoder_state_dict(inspection: _Inspection, preset: ViTPreset) -> dict[str, torch.Tensor]:
    """The checkpoint's vision weights under our keys; raises ValueError on a missing or an unexpected key."""
    import torch

    spec = _FORMATS[inspection.format]
    available = _scoped(_tensor_loaders(spec.weight_files(inspection.path)), spec.prefix)
    mapping = spec.mapping(preset)
    used = {key for sources in mapping.values() for key in sources}
    missing = sorted(used - available.keys())
    unexpected = sorted(key for key in available.keys() - used if not spec.ignored.match(key))
    for problem, keys in (("lacks", missing), ("has unexpected", unexpected)):
        if keys:
            listed = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
            raise ValueError(f"checkpoint {inspection.path} {problem} {inspection.format} keys: {listed}")
    dtype = torch.get_default_dtype()
    state = {ours: torch.cat([available[key]() for key in sources]).to(dtype) for ours, sources in mapping.items()}
    state["position_embedding"] = state["position_embedding"].reshape(1, -1, preset.width)  # (P, C) -> (1, P, C)
    return state


@dataclass(frozen=True)
class _Format:
    """Where one checkpoint format keeps the encoder's weights and what they are called."""

    prefix: str  # the vision tower's key prefix in a full (vision + text) model
    ignored: re.Pattern[str]  # vision-tower keys the encoder has no use for (heads, projections)
    mapping: Callable[[ViTPreset], dict[str, tuple[str, ...]]]
    inspect: Callable[[Path], _Inspection]
    weight_files: Callable[[Path], list[Path]]


_CLIP_STYLE = dict(class_token=True, pre_norm=True, post_norm=False, patch_bias=False)
_SIGLIP_STYLE = dict(class_token=False, pre_norm=False, post_norm=True, patch_bias=True)
_CLIP_DEFAULTS = dict(patch_size=32, image_size=224, hidden_act="quick_gelu", layer_norm_eps=1e-5)
_SIGLIP_DEFAULTS = dict(patch_size=16, image_size=224, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
_FORMATS: dict[str, _Format] = {
    "hf-clip": _Format(
        prefix="vision_model.",
        ignored=re.compile(r"post_layernorm\.|embeddings\.position_ids$"),  # old checkpoints saved position_ids
        mapping=_hf_mapping,
        inspect=partial(_inspect_hf, format_name="hf-clip", style=_CLIP_STYLE, defaults=_CLIP_DEFAULTS),
        weight_files=_hf_weight_files,
    ),
    "hf-siglip": _Format(
        prefix="vision_model.",
        ignored=re.compile(r"post_layernorm\.|head\.|embeddings\.position_ids$"),  # head: attention pooling
        mapping=_hf_mapping,
        inspect=partial(_inspect_hf, format_name="hf-siglip", style=_SIGLIP_STYLE, defaults=_SIGLIP_DEFAULTS),
        weight_files=_hf_weight_files,
    ),
    "open-clip": _Format(
        prefix="visual.",
        ignored=re.compile(r"proj$|ln_post\."),  # proj: the (C, embed_dim) projection into CLIP space
        mapping=_open_clip_mapping,
        inspect=_inspect_open_clip,
        weight_files=_open_clip_files,
    ),
}
FORMATS = tuple(_FORMATS)
