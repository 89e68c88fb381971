"""Pretrained weights: tiny random HF CLIP / SigLIP models saved to disk and an OpenCLIP state dict converted from
one, loaded through ``load_encoder`` and compared with the HF outputs (``assert_close``), at the checkpoint's
resolution and, with interpolated positional embeddings, at a higher one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mm1core.vision import ENCODERS, FROM_CHECKPOINT, checkpoint_problem, detect_format, preset_from_checkpoint
from mm1core.vision.vit import build_encoder, load_encoder

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights everywhere (HF initialises LayerNorms to the identity, which would hide a mix-up)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def clip_vision(**config) -> torch.nn.Module:
    return perturbed(transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**{**TINY, "patch_size": 8, **config})))


def siglip_vision(**config) -> torch.nn.Module:
    siglip_config = transformers.SiglipVisionConfig(**{**TINY, "patch_size": 8, **config})
    return perturbed(transformers.SiglipVisionModel(siglip_config))


def hidden_states(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=images, interpolate_pos_encoding=True).last_hidden_state


def features(encoder: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return encoder.eval()(images)


# --------------------------------------------------------------------------------------------------- HF CLIP
@pytest.mark.parametrize("resolution", [32, 48], ids=["native", "interpolated"])
def test_hf_clip_matches_last_hidden_state(tmp_path: Path, resolution: int) -> None:
    model = clip_vision()
    model.save_pretrained(tmp_path)
    assert detect_format(tmp_path) == "hf-clip"
    preset, native = preset_from_checkpoint(tmp_path)
    assert native == 32 and preset.activation == "quick_gelu" and preset.class_token and not preset.post_norm
    images = torch.randn(2, 3, resolution, resolution)
    expected = hidden_states(model, images)[:, 1:]  # HF's bicubic interpolate_pos_encoding at 48 px
    torch.testing.assert_close(features(load_encoder(tmp_path, 32), images), expected)  # interpolated on the fly
    resized = load_encoder(tmp_path, resolution)  # positional embeddings resized once at load
    assert resized.resolution == resolution
    assert all(parameter.requires_grad and parameter.device.type == "cpu" for parameter in resized.parameters())
    torch.testing.assert_close(features(resized, images), expected)


def test_hf_clip_full_model_directory(tmp_path: Path) -> None:
    config = transformers.CLIPConfig(vision_config={**TINY, "patch_size": 8}, text_config=TINY_TEXT, projection_dim=16)
    model = perturbed(transformers.CLIPModel(config))
    model.save_pretrained(tmp_path)
    assert detect_format(tmp_path) == "hf-clip"
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.vision_model(pixel_values=images).last_hidden_state[:, 1:]
    torch.testing.assert_close(features(build_encoder(FROM_CHECKPOINT, 32, str(tmp_path)), images), expected)


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "sharded-safetensors"])
def test_hf_clip_older_hub_layouts(tmp_path: Path, layout: str) -> None:
    """Hub checkpoints saved by older transformers: ``vision_model.`` prefixes, a saved ``position_ids`` buffer,
    ``pytorch_model.bin`` or safetensors shards with an index."""
    from safetensors.torch import save_file

    model = clip_vision()
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    state = {f"vision_model.{key}": value.contiguous() for key, value in model.state_dict().items()}
    state["vision_model.embeddings.position_ids"] = torch.arange(17)[None]
    if layout == "pytorch_model.bin":
        torch.save(state, tmp_path / "pytorch_model.bin")
    else:
        keys = sorted(state)
        shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
        for shard, shard_keys in shards.items():
            save_file({key: state[key] for key in shard_keys}, str(tmp_path / shard))
        weight_map = {key: shard for shard, shard_keys in shards.items() for key in shard_keys}
        (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(features(load_encoder(tmp_path, 32), images), hidden_states(model, images)[:, 1:])


# ------------------------------------------------------------------------------------------------- HF SigLIP
@pytest.mark.parametrize("resolution", [32, 48], ids=["native", "interpolated"])
def test_hf_siglip_matches_last_hidden_state(tmp_path: Path, resolution: int) -> None:
    model = siglip_vision()  # with its attention-pooling head, which the encoder ignores
    model.save_pretrained(tmp_path)
    assert detect_format(tmp_path) == "hf-siglip"
    preset, _ = preset_from_checkpoint(tmp_path)
    assert preset.activation == "gelu_tanh" and preset.norm_eps == 1e-6 and not preset.class_token
    images = torch.randn(2, 3, resolution, resolution)
    torch.testing.assert_close(features(load_encoder(tmp_path, resolution), images), hidden_states(model, images))


def test_hf_siglip_full_model_directory(tmp_path: Path) -> None:
    model = perturbed(transformers.SiglipModel(transformers.SiglipConfig(vision_config=TINY, text_config=TINY_TEXT)))
    model.save_pretrained(tmp_path)
    assert detect_format(tmp_path) == "hf-siglip"
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.vision_model(pixel_values=images).last_hidden_state
    torch.testing.assert_close(features(load_encoder(tmp_path, 32), images), expected)


def test_checkpoint_loads_into_a_registered_preset_it_fits(tmp_path: Path) -> None:
    # vit-tiny's style is SigLIP's with exact GELU and eps 1e-5: no class token, no pre-norm, patch bias, post-norm
    shape = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4)
    model = siglip_vision(**shape, hidden_act="gelu", layer_norm_eps=1e-5)
    model.save_pretrained(tmp_path)
    assert checkpoint_problem(str(tmp_path), "vit-tiny") is None
    encoder = build_encoder("vit-tiny", 32, str(tmp_path))
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(features(encoder, images), hidden_states(model, images))


# -------------------------------------------------------------------------------------------------- OpenCLIP
def open_clip_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An HF CLIP vision model's weights in OpenCLIP's ``visual.*`` layout, plus text-tower keys as in a full model."""
    hf = {key.removeprefix("vision_model."): value for key, value in model.state_dict().items()}
    state = {
        "conv1.weight": hf["embeddings.patch_embedding.weight"],
        "class_embedding": hf["embeddings.class_embedding"],
        "positional_embedding": hf["embeddings.position_embedding.weight"],
        "proj": torch.randn(model.config.hidden_size, 16),
    }
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        state |= {f"{ours}.{kind}": hf[f"{theirs}.{kind}"] for kind in ("weight", "bias")}
    for index in range(model.config.num_hidden_layers):
        block, layer = f"transformer.resblocks.{index}.", f"encoder.layers.{index}."
        for kind in ("weight", "bias"):
            projections = [hf[f"{layer}self_attn.{name}_proj.{kind}"] for name in "qkv"]
            state[f"{block}attn.in_proj_{kind}"] = torch.cat(projections)
            for ours, theirs in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1")):
                state[f"{block}{ours}.{kind}"] = hf[f"{layer}{theirs}.{kind}"]
            state[f"{block}mlp.c_proj.{kind}"] = hf[f"{layer}mlp.fc2.{kind}"]
            state[f"{block}attn.out_proj.{kind}"] = hf[f"{layer}self_attn.out_proj.{kind}"]
    state = {f"visual.{key}": value.clone().contiguous() for key, value in state.items()}
    text = {"positional_embedding": torch.randn(77, 32), "transformer.resblocks.0.ln_1.weight": torch.ones(32)}
    return state | text | {"logit_scale": torch.tensor(4.6)}


def open_clip_tokens(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """OpenCLIP's token output: ``ln_post`` on every token of the last block's output (class token dropped)."""
    with torch.no_grad():
        return model.post_layernorm(hidden_states(model, images))[:, 1:]


def save_as(state: dict[str, torch.Tensor], path: Path, layout: str) -> Path:
    if layout == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path.with_suffix(".safetensors")))
        return path.with_suffix(".safetensors")
    if layout == "ddp-wrapped":
        state = {"epoch": 3, "state_dict": {f"module.{key}": value for key, value in state.items()}}
    torch.save(state, path.with_suffix(".pt"))
    return path.with_suffix(".pt")


@pytest.mark.parametrize("layout", ["plain", "ddp-wrapped", "safetensors"])
@pytest.mark.parametrize("resolution", [32, 48], ids=["native", "interpolated"])
def test_open_clip_matches_post_layernorm_tokens(tmp_path: Path, layout: str, resolution: int) -> None:
    model = clip_vision(hidden_size=128, intermediate_size=256, hidden_act="gelu")  # 2 heads of width 64
    path = save_as(open_clip_state_dict(model), tmp_path / "open_clip", layout)
    assert detect_format(path) == "open-clip"
    preset, native = preset_from_checkpoint(path)
    assert (preset.width, preset.depth, preset.heads, preset.mlp_width, native) == (128, 2, 2, 256, 32)
    assert preset.class_token and preset.pre_norm and preset.post_norm and not preset.patch_bias
    images = torch.randn(2, 3, resolution, resolution)
    torch.testing.assert_close(features(load_encoder(path, resolution), images), open_clip_tokens(model, images))


def test_open_clip_directory_with_its_config(tmp_path: Path) -> None:
    model = clip_vision()  # QuickGELU, 2 heads of width 16: only open_clip_config.json can say so
    torch.save(open_clip_state_dict(model), tmp_path / "open_clip_pytorch_model.bin")
    config = {"model_cfg": {"quick_gelu": True, "vision_cfg": {"width": 32, "head_width": 16, "patch_size": 8}}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    assert detect_format(tmp_path) == "open-clip"
    preset, _ = preset_from_checkpoint(tmp_path)
    assert (preset.heads, preset.activation) == (2, "quick_gelu")
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(features(load_encoder(tmp_path, 32), images), open_clip_tokens(model, images))


def test_open_clip_loading_is_strict(tmp_path: Path) -> None:
    state = open_clip_state_dict(clip_vision(hidden_size=64, intermediate_size=128, hidden_act="gelu"))
    torch.save(state | {"visual.transformer.resblocks.0.ls_1.gamma": torch.ones(64)}, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="unexpected open-clip keys: transformer.resblocks.0.ls_1.gamma"):
        load_encoder(tmp_path / "extra.pt", 32)
    del state["visual.transformer.resblocks.1.mlp.c_fc.bias"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="lacks open-clip keys: transformer.resblocks.1.mlp.c_fc.bias"):
        load_encoder(tmp_path / "missing.pt", 32)


# ------------------------------------------------------------------------------------------------- problems
def test_checkpoint_problem_names_each_mismatch(tmp_path: Path) -> None:
    siglip_vision().save_pretrained(tmp_path)
    problem = checkpoint_problem(str(tmp_path), "vit-tiny")
    assert "width 32 in the checkpoint, 64 in vit-tiny" in problem
    assert "depth 2 in the checkpoint, 4 in vit-tiny" in problem
    assert "activation gelu_tanh in the checkpoint, gelu in vit-tiny" in problem
    with pytest.raises(ValueError, match="width 32 in the checkpoint, 64 in vit-tiny"):
        load_encoder(tmp_path, 32, "vit-tiny")
    assert checkpoint_problem(str(tmp_path), FROM_CHECKPOINT) is None
    assert "vit-tiny" in checkpoint_problem(str(tmp_path), "vit-gigantic")  # lists the valid names


def test_checkpoint_problem_for_unusable_paths(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pt"
    assert checkpoint_problem(str(missing), "vit-l-14") == f"checkpoint {missing} does not exist"
    (tmp_path / "weights.npz").write_bytes(b"")
    assert "must be an OpenCLIP state dict" in checkpoint_problem(str(tmp_path / "weights.npz"), FROM_CHECKPOINT)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert "model_type 'llama' is not one of clip" in checkpoint_problem(str(tmp_path), FROM_CHECKPOINT)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip_vision_model"}))
    assert "holds no model.safetensors" in checkpoint_problem(str(tmp_path), FROM_CHECKPOINT)
    torch.save({"model.embed_tokens.weight": torch.zeros(4, 4)}, tmp_path / "lm.pt")
    assert "not an OpenCLIP ViT state dict" in checkpoint_problem(str(tmp_path / "lm.pt"), FROM_CHECKPOINT)


def test_reading_a_preset_is_torch_free(tmp_path: Path) -> None:
    model = clip_vision(hidden_size=64, intermediate_size=128, hidden_act="gelu")
    model.save_pretrained(tmp_path / "hf")
    path = save_as(open_clip_state_dict(model), tmp_path / "open_clip", "safetensors")
    code = (
        "import sys; from mm1core.vision import checkpoint_problem, preset_from_checkpoint; "
        f"print(preset_from_checkpoint({str(path)!r})[0].width, preset_from_checkpoint({str(tmp_path / 'hf')!r})[1], "
        f"checkpoint_problem({str(path)!r}, 'vit-tiny') is not None, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["64", "32", "True", "False"]


def write_hf_config(directory: Path, model_type: str, vision_config: dict) -> Path:
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": model_type, "vision_config": vision_config}))
    (directory / "model.safetensors").write_bytes(b"")  # never read: the preset comes from config.json
    return directory


def write_open_clip_header(path: Path, width: int, depth: int, patch: int, grid: int, mlp_width: int) -> Path:
    """A safetensors file holding only the header of an OpenCLIP ViT's ``visual.*`` tensors (shapes, no data)."""
    shapes = {"conv1.weight": [width, 3, patch, patch], "class_embedding": [width], "proj": [width, 1024]}
    shapes["positional_embedding"] = [1 + grid * grid, width]
    norms = ["ln_pre", "ln_post"]
    for index in range(depth):
        block = f"transformer.resblocks.{index}."
        norms += [f"{block}ln_1", f"{block}ln_2"]
        linears = {"attn.in_proj": (3 * width, width), "attn.out_proj": (width, width)}
        linears |= {"mlp.c_fc": (mlp_width, width), "mlp.c_proj": (width, mlp_width)}
        for name, (rows, columns) in linears.items():
            separator = "_" if name == "attn.in_proj" else "."  # nn.MultiheadAttention's in_proj_weight
            shapes |= {f"{block}{name}{separator}weight": [rows, columns], f"{block}{name}{separator}bias": [rows]}
    shapes |= {f"{norm}.{kind}": [width] for norm in norms for kind in ("weight", "bias")}
    header = {f"visual.{key}": {"dtype": "F32", "shape": size, "data_offsets": [0, 0]} for key, size in shapes.items()}
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded)
    return path


def test_real_checkpoint_shapes_fit_their_presets(tmp_path: Path) -> None:
    """The configs of openai/clip-vit-large-patch14-336 and google/siglip-so400m-patch14-384, and the tensor shapes
    of DFN5B-CLIP-ViT-H-14-378 (OpenCLIP), read without their weights."""
    large = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
    large |= dict(patch_size=14, image_size=336, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    clip = write_hf_config(tmp_path / "clip-l-336", "clip", large)
    assert checkpoint_problem(str(clip), "vit-l-14") is None and preset_from_checkpoint(clip)[1] == 336
    so400m = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)
    so400m |= dict(patch_size=14, image_size=384, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    siglip = write_hf_config(tmp_path / "siglip-so400m", "siglip", so400m)
    assert checkpoint_problem(str(siglip), "siglip-so400m-14") is None
    assert preset_from_checkpoint(siglip)[1] == 378  # HF says 384; the 27x27 grid covers 378 px
    dfn = write_open_clip_header(tmp_path / "dfn5b-h-14-378.safetensors", 1280, 32, 14, 27, 5120)
    assert checkpoint_problem(str(dfn), "vit-h-14") is None
    preset, resolution = preset_from_checkpoint(dfn)
    assert (preset.heads, resolution, preset.params(resolution)) == (16, 378, ENCODERS.get("vit-h-14").params(378))
    assert "width 1280 in the checkpoint, 1024 in vit-l-14" in checkpoint_problem(str(dfn), "vit-l-14")
