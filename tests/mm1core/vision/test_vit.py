"""The ViT encoder: output shapes at several resolutions, positional-embedding interpolation."""

from __future__ import annotations

import pytest
import torch

from mm1core.vision import ENCODERS
from mm1core.vision.vit import VisionTransformer, build_encoder


@pytest.mark.parametrize("resolution", [32, 64, 96, 128])
def test_output_is_one_feature_per_patch(resolution: int) -> None:
    encoder = build_encoder("vit-tiny")
    grid = resolution // encoder.patch
    assert encoder(torch.randn(2, 3, resolution, resolution)).shape == (2, grid * grid, encoder.width)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_preset_builds(name: str) -> None:
    preset = ENCODERS.get(name)
    features = VisionTransformer(preset)(torch.randn(1, 3, preset.base_resolution, preset.base_resolution))
    assert features.shape == (1, (preset.base_resolution // preset.patch) ** 2, preset.width)


def test_position_embeddings_are_the_parameter_at_the_base_grid() -> None:
    encoder = build_encoder("vit-tiny")
    assert encoder.position_embeddings(encoder.base_grid) is encoder.position_embedding


def test_position_embeddings_interpolate_smoothly() -> None:
    encoder = build_encoder("vit-tiny")
    with torch.no_grad():
        encoder.position_embedding.copy_(
            torch.linspace(-1, 1, encoder.base_grid).repeat(encoder.base_grid)[None, :, None]
        )
    resized = encoder.position_embeddings(2 * encoder.base_grid)  # (1, g*g, C), varies along x only
    assert resized.shape == (1, (2 * encoder.base_grid) ** 2, encoder.width)
    row = resized[0, : 2 * encoder.base_grid, 0]
    assert torch.all(row[1:] >= row[:-1] - 1e-6)  # monotone, as the base was
    torch.testing.assert_close(resized[0, :, 0].reshape(8, 8)[0], resized[0, :, 0].reshape(8, 8)[5])


def test_interpolated_embeddings_get_gradients() -> None:
    encoder = build_encoder("vit-tiny")
    encoder(torch.randn(1, 3, 64, 64)).sum().backward()
    assert encoder.position_embedding.grad is not None and encoder.position_embedding.grad.abs().sum() > 0


def test_rejects_non_divisible_images() -> None:
    with pytest.raises(ValueError, match="divisible"):
        build_encoder("vit-tiny")(torch.randn(1, 3, 36, 36))
