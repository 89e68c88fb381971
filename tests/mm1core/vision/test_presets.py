"""ViT presets: torch-free import, grid arithmetic, the tiny flavour, the registry's contents."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mm1core.vision import ENCODERS, FROM_CHECKPOINT, ViTPreset


def test_package_import_is_torch_free() -> None:
    code = "import sys, mm1core.vision.checkpoints; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_grid_needs_a_multiple_of_the_patch() -> None:
    preset = ENCODERS.get("vit-h-14")
    assert preset.grid(378) == 27
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        preset.grid(384)


@pytest.mark.parametrize("name", ENCODERS.names(), ids=ENCODERS.names())
def test_tiny_flavour_keeps_the_style(name: str) -> None:
    preset, tiny = ENCODERS.get(name), ENCODERS.get(name).tiny()
    assert (tiny.width, tiny.depth) == (32, 2)
    for field in ("patch", "class_token", "pre_norm", "post_norm", "activation", "patch_bias", "norm_eps"):
        assert getattr(tiny, field) == getattr(preset, field)


def test_real_shapes_are_registered_with_their_styles() -> None:
    large, huge, siglip = ENCODERS.get("vit-l-14"), ENCODERS.get("vit-h-14"), ENCODERS.get("siglip-so400m-14")
    assert (large.width, large.depth, large.heads, large.patch, large.mlp_width) == (1024, 24, 16, 14, 4096)
    assert large.class_token and large.pre_norm and not large.post_norm and large.activation == "quick_gelu"
    assert (huge.width, huge.depth, huge.heads, huge.mlp_width) == (1280, 32, 16, 5120)
    assert huge.class_token and huge.pre_norm and huge.post_norm and huge.activation == "quick_gelu"  # DFN-5B
    assert not siglip.class_token and siglip.activation == "gelu_tanh" and siglip.norm_eps == 1e-6
    assert FROM_CHECKPOINT not in ENCODERS


def test_invalid_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        ViTPreset(width=64, depth=1, heads=3, patch=8, mlp_width=64)
    with pytest.raises(ValueError, match="depth must be positive"):
        ViTPreset(width=64, depth=0, heads=4, patch=8, mlp_width=64)
