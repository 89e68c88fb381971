"""The ViT encoder: exact parameter counts and shapes of every preset (on the meta device), the tiny flavour of
every entry stepped on a CPU, positional-embedding interpolation, state-dict round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mm1core.vision import ENCODERS, FROM_CHECKPOINT
from mm1core.vision.vit import VisionTransformer, build_encoder, interpolate_position_embedding

# A resolution each preset is typically run at: MM1's 378 px for the /14 encoders, 336 px for CLIP ViT-L/14-336.
TYPICAL_RESOLUTION = {"vit-b-16": 224, "vit-l-14": 336, "vit-h-14": 378, "siglip-so400m-14": 378}
NAMES = ENCODERS.names()


def typical_resolution(name: str) -> int:
    return TYPICAL_RESOLUTION.get(name, 32)


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_parameter_count_is_the_closed_form(name: str) -> None:
    preset, resolution = ENCODERS.get(name), typical_resolution(name)
    with torch.device("meta"):
        encoder = VisionTransformer(preset, resolution)
    assert sum(parameter.numel() for parameter in encoder.parameters()) == preset.params(resolution)


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_meta_forward_gives_one_feature_per_patch(name: str) -> None:
    preset, resolution = ENCODERS.get(name), typical_resolution(name)
    with torch.device("meta"):
        encoder = VisionTransformer(preset, resolution)
        for side in (resolution, 2 * resolution):  # the built grid, then an interpolated one
            features = encoder(torch.empty(2, 3, side, side))
            assert features.shape == (2, (side // preset.patch) ** 2, preset.width)


def test_real_shapes_match_the_papers() -> None:
    assert ENCODERS.get("vit-l-14").grid(336) ** 2 == 576  # CLIP ViT-L/14 at 336 px
    assert round(ENCODERS.get("vit-h-14").params(378) / 1e6) == 631  # DFN-5B ViT-H/14 image tower, 378 px
    assert round(ENCODERS.get("vit-l-14").params(224) / 1e6) == 303  # CLIP ViT-L/14 image tower


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_tiny_flavour_steps_with_finite_gradients(name: str) -> None:
    torch.manual_seed(0)
    tiny = ENCODERS.get(name).tiny()
    encoder = VisionTransformer(tiny, resolution=2 * tiny.patch)
    features = encoder(torch.randn(2, 3, 3 * tiny.patch, 3 * tiny.patch))  # an interpolated 3x3 grid
    assert features.shape == (2, 9, tiny.width)
    features.square().mean().backward()
    for parameter_name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name
    assert encoder.position_embedding.grad.abs().sum() > 0


def test_interpolation_is_the_identity_at_the_built_grid() -> None:
    embedding = torch.randn(1, 16, 8)
    assert interpolate_position_embedding(embedding, 4) is embedding
    assert interpolate_position_embedding(embedding, 7).shape == (1, 49, 8)
    assert interpolate_position_embedding(embedding, 2).shape == (1, 4, 8)


def test_interpolation_is_smooth() -> None:
    ramp = torch.linspace(-1, 1, 4).repeat(4)[None, :, None]  # (1, 16, 1), varies along x only
    resized = interpolate_position_embedding(ramp, 8)[0, :, 0].reshape(8, 8)
    assert torch.all(resized[0, 1:] >= resized[0, :-1] - 1e-6)  # monotone, as the base was
    torch.testing.assert_close(resized[0], resized[5])


def test_class_token_position_is_kept_when_interpolating() -> None:
    encoder = VisionTransformer(ENCODERS.get("vit-l-14").tiny(), resolution=28)
    resized = encoder.position_embeddings(4)
    assert resized.shape == (1, 1 + 16, 32)
    torch.testing.assert_close(resized[:, 0], encoder.position_embedding[:, 0])


@pytest.mark.parametrize("name", ["vit-tiny", "vit-h-14"], ids=["no-class-token", "class-token"])
def test_permanent_resize_equals_interpolating_on_the_fly(name: str) -> None:
    torch.manual_seed(0)
    tiny = ENCODERS.get(name).tiny()
    encoder = VisionTransformer(tiny, resolution=2 * tiny.patch).eval()
    images = torch.randn(2, 3, 5 * tiny.patch, 5 * tiny.patch)
    on_the_fly = encoder(images)
    encoder.resize_position_embedding_(5 * tiny.patch)
    assert (encoder.resolution, encoder.grid) == (5 * tiny.patch, 5)
    assert encoder.position_embedding.shape == (1, tiny.class_token + 25, tiny.width)
    torch.testing.assert_close(encoder(images), on_the_fly)


def test_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = build_encoder("vit-tiny", 32).eval()
    torch.save(encoder.state_dict(), tmp_path / "encoder.pt")
    torch.manual_seed(1)
    restored = build_encoder("vit-tiny", 32).eval()
    restored.load_state_dict(torch.load(tmp_path / "encoder.pt", weights_only=True))
    images = torch.randn(2, 3, 48, 48)
    torch.testing.assert_close(restored(images), encoder(images))


def test_build_encoder_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="divisible"):
        build_encoder("vit-tiny", 32)(torch.randn(1, 3, 36, 36))
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        build_encoder("vit-tiny", 36)
    with pytest.raises(ValueError, match="needs a checkpoint"):
        build_encoder(FROM_CHECKPOINT, 32)
    with pytest.raises(KeyError, match="vit-tiny"):
        build_encoder("vit-gigantic", 32)


def changed_positions(encoder: VisionTransformer, images: torch.Tensor, patch_index: int, prefix) -> list[int]:
    """The patch positions whose output moves when the pixels of patch ``patch_index`` (raster order) do."""
    grid, size = images.shape[-1] // encoder.patch, encoder.patch
    perturbed = images.clone()
    row, column = divmod(patch_index, grid)
    perturbed[..., row * size : (row + 1) * size, column * size : (column + 1) * size] += 1.0
    moved = (encoder(perturbed, causal_prefix=prefix) - encoder(images, causal_prefix=prefix)).abs().amax(dim=(0, 2))
    return [position for position, change in enumerate(moved.tolist()) if change > 1e-6]


@pytest.mark.parametrize("name", ["vit-tiny", "vit-b-16"], ids=["no-class-token", "class-token"])
def test_prefix_causal_attention_blocks_later_patches(name: str) -> None:
    """AIM's prefix attention (El-Nouby et al., 2024): a later patch changes no earlier output; a prefix patch
    changes every output; with no prefix argument attention stays bidirectional."""
    torch.manual_seed(0)
    tiny = ENCODERS.get(name).tiny()
    encoder = VisionTransformer(tiny, resolution=4 * tiny.patch).eval()  # 16 patches
    images = torch.randn(2, 3, 4 * tiny.patch, 4 * tiny.patch)
    assert changed_positions(encoder, images, 9, prefix=3) == list(range(9, 16))
    assert changed_positions(encoder, images, 2, prefix=3) == list(range(16))  # inside the prefix: seen by all
    assert changed_positions(encoder, images, 9, prefix=None) == list(range(16))
    torch.testing.assert_close(encoder(images, causal_prefix=None), encoder(images))


def test_per_image_prefixes_equal_one_run_per_image() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("vit-tiny", 32).eval()
    images = torch.randn(2, 3, 32, 32)
    together = encoder(images, causal_prefix=torch.tensor([1, 7]))
    alone = [encoder(images[index : index + 1], causal_prefix=prefix) for index, prefix in enumerate((1, 7))]
    torch.testing.assert_close(together, torch.cat(alone))
