"""The stage-0 losses: CLIP's and SigLIP's equal open_clip's ``ClipLoss`` / ``SigLipLoss`` (values and gradients),
the learned temperature gets gradients and is capped at 100, AIM's loss equals a case computed by hand."""

from __future__ import annotations

import importlib.util
import math
import statistics
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from mm1core.objectives.autoregressive import autoregressive_loss, normalise_patches, patchify
from mm1core.objectives.contrastive import (
    CLIP_INIT_LOG_SCALE,
    SIGLIP_INIT_BIAS,
    SIGLIP_INIT_LOG_SCALE,
    ContrastiveLoss,
    ContrastiveObjective,
    LearnedTemperature,
    SigmoidLoss,
    SigmoidObjective,
)
from mm1core.objectives.presets import TEXT_TOWERS
from mm1core.vision import ENCODERS
from mm1core.vision.vit import VisionTransformer


@pytest.fixture(scope="module")
def open_clip_loss() -> ModuleType:
    """open_clip's ``loss.py`` loaded by file path: the package's ``__init__`` needs torchvision, ``loss.py`` only
    torch. The Makefile installs ``open_clip_torch`` with ``--no-deps``."""
    spec = importlib.util.find_spec("open_clip")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("open_clip_torch is not installed (make venv: pip install --no-deps open_clip_torch==3.3.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    loss_spec = importlib.util.spec_from_file_location("open_clip_loss", path)
    assert loss_spec is not None and loss_spec.loader is not None, path
    module = importlib.util.module_from_spec(loss_spec)
    loss_spec.loader.exec_module(module)
    return module


def features(seed: int, batch: int = 8, width: int = 16, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """L2-normalised image and text features, each (batch, width), leaves that require grad."""
    generator = torch.Generator().manual_seed(seed)
    pair = [F.normalize(torch.randn(batch, width, generator=generator, dtype=dtype), dim=-1) for _ in range(2)]
    return [tensor.requires_grad_() for tensor in pair]


def loss_and_gradients(loss_function, *inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    loss = loss_function(*inputs)
    return loss.detach(), torch.autograd.grad(loss, inputs)


CASES = [(0, CLIP_INIT_LOG_SCALE, torch.float32), (1, math.log(100), torch.float32), (2, 0.3, torch.float64)]


@pytest.mark.parametrize(("seed", "log_scale", "dtype"), CASES, ids=["init", "cap", "float64"])
def test_contrastive_equals_open_clip_clip_loss(open_clip_loss: ModuleType, seed: int, log_scale: float, dtype) -> None:
    image, text = features(seed, dtype=dtype)
    scale = torch.tensor(log_scale, dtype=dtype).exp().requires_grad_()
    ours = loss_and_gradients(ContrastiveLoss(), image, text, scale)
    theirs = loss_and_gradients(open_clip_loss.ClipLoss(), image, text, scale)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize(("seed", "log_scale", "dtype"), CASES, ids=["init", "cap", "float64"])
def test_sigmoid_equals_open_clip_siglip_loss(open_clip_loss: ModuleType, seed: int, log_scale: float, dtype) -> None:
    image, text = features(seed, dtype=dtype)
    scale = torch.tensor(log_scale, dtype=dtype).exp().requires_grad_()
    bias = torch.tensor(SIGLIP_INIT_BIAS + seed, dtype=dtype, requires_grad=True)
    ours = loss_and_gradients(SigmoidLoss(), image, text, scale, bias)
    theirs = loss_and_gradients(open_clip_loss.SigLipLoss(), image, text, scale, bias)
    torch.testing.assert_close(ours, theirs)


def test_contrastive_loss_of_orthogonal_pairs_is_the_hand_value() -> None:
    """Features e_i: logits ``scale * I``, each row's cross entropy ``log(1 + (N - 1) e^-scale)``."""
    eye, scale = torch.eye(4), torch.tensor(2.0)
    expected = math.log(1 + 3 * math.exp(-2.0))
    torch.testing.assert_close(ContrastiveLoss()(eye, eye, scale), torch.tensor(expected))


@pytest.fixture
def image_text_inputs(tokenizer) -> tuple[VisionTransformer, torch.Tensor, torch.Tensor, int]:
    torch.manual_seed(0)
    encoder = VisionTransformer(ENCODERS.get("vit-tiny").tiny(), resolution=16)
    captions = ["a red circle.", "a small blue square above a green triangle.", "two circles.", "a square."]
    rows = [tokenizer.encode(caption) + [tokenizer.eos_id] for caption in captions]
    length = max(map(len, rows))
    token_ids = torch.tensor([row + [tokenizer.pad_id] * (length - len(row)) for row in rows])
    return encoder, torch.randn(len(rows), 3, 16, 16), token_ids, tokenizer.vocab_size


def test_objectives_compute_open_clips_loss_of_their_own_features(
    open_clip_loss: ModuleType, image_text_inputs
) -> None:
    encoder, images, token_ids, vocab = image_text_inputs
    tower = TEXT_TOWERS.get("text-tiny").tiny()
    clip, siglip = ContrastiveObjective(encoder, vocab, tower), SigmoidObjective(encoder, vocab, tower)
    for objective, reference in ((clip, open_clip_loss.ClipLoss()), (siglip, open_clip_loss.SigLipLoss())):
        image, text = objective.encode_image(images), objective.encode_text(token_ids)
        torch.testing.assert_close(image.norm(dim=-1), torch.ones(len(images)))
        extra = (objective.logit_bias,) if objective is siglip else ()
        expected = reference(image, text, objective.temperature(), *extra)
        torch.testing.assert_close(objective(images, token_ids), expected)


def test_temperature_and_bias_start_at_the_papers_values_and_get_gradients(image_text_inputs) -> None:
    encoder, images, token_ids, vocab = image_text_inputs
    tower = TEXT_TOWERS.get("text-tiny").tiny()
    clip, siglip = ContrastiveObjective(encoder, vocab, tower), SigmoidObjective(encoder, vocab, tower)
    torch.testing.assert_close(clip.temperature().detach(), torch.tensor(1 / 0.07))
    torch.testing.assert_close(siglip.temperature().detach(), torch.tensor(10.0))
    assert siglip.logit_bias.item() == -10.0 and SIGLIP_INIT_LOG_SCALE == math.log(10)
    clip(images, token_ids).backward()
    siglip(images, token_ids).backward()
    for parameter in (clip.temperature.log_scale, siglip.temperature.log_scale, siglip.logit_bias):
        assert parameter.grad is not None and parameter.grad.abs() > 0


def test_temperature_is_capped_at_100_and_still_learns_there() -> None:
    temperature = LearnedTemperature(math.log(1000.0))
    scale = temperature()
    torch.testing.assert_close(scale.detach(), torch.tensor(100.0))
    torch.testing.assert_close(temperature.log_scale.detach(), torch.tensor(math.log(100.0)))  # clamped in place
    image, text = features(3)
    ContrastiveLoss()(image, text, scale).backward()
    assert temperature.log_scale.grad is not None and temperature.log_scale.grad.abs() > 0  # not stuck at the cap
    assert LearnedTemperature(-1.0)().item() == 1.0  # and never below 1, as open_clip's clamp_(0, log 100)


def test_text_tower_pools_the_last_real_token_whatever_the_padding(image_text_inputs) -> None:
    encoder, _, token_ids, vocab = image_text_inputs
    tower = ContrastiveObjective(encoder, vocab, TEXT_TOWERS.get("text-tiny").tiny()).text_tower
    padded = F.pad(token_ids, (0, 5), value=0)
    torch.testing.assert_close(tower(padded), tower(token_ids))


# --------------------------------------------------------------------------------------------- AIM by hand
# Four 2x2 RGB patches of a 4x4 image, each written as its 12 values in (row, column, channel) order.
PATCHES = [
    [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0],
    [3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    list(range(12)),
]


def hand_image() -> torch.Tensor:
    image = torch.zeros(1, 3, 4, 4)
    for index, values in enumerate(PATCHES):
        top, left = 2 * (index // 2), 2 * (index % 2)  # raster order over the 2x2 grid of patches
        for position, value in enumerate(values):
            pixel, channel = divmod(position, 3)
            image[0, channel, top + pixel // 2, left + pixel % 2] = value
    return image


def hand_normalised(values: list[int]) -> list[float]:
    mean, variance = statistics.mean(values), statistics.variance(values)  # unbiased, as MAE's torch.var
    return [(value - mean) / math.sqrt(variance + 1e-6) for value in values]


def test_patchify_cuts_raster_order_patches_channels_last() -> None:
    assert patchify(hand_image(), 2)[0].tolist() == PATCHES


def test_normalised_targets_are_the_hand_values() -> None:
    expected = torch.tensor([hand_normalised(values) for values in PATCHES])
    torch.testing.assert_close(normalise_patches(patchify(hand_image(), 2))[0], expected)


def test_autoregressive_loss_is_the_hand_mse_over_the_non_prefix_patches() -> None:
    """Every position predicts the one-hot ``v = e_0``; with prefix S = 2 of K = 4 patches only patches 2 and 3
    are scored (predicted from positions 1 and 2), each by ``mean_k (v_k - t_k)^2``."""
    targets = normalise_patches(patchify(hand_image(), 2))  # (1, 4, 12)
    predictions = torch.zeros(1, 4, 12)
    predictions[..., 0] = 1.0

    def patch_error(index: int) -> float:
        normalised = hand_normalised(PATCHES[index])
        return statistics.mean(((k == 0) - t) ** 2 for k, t in enumerate(normalised))

    expected = (patch_error(2) + patch_error(3)) / 2
    torch.testing.assert_close(autoregressive_loss(predictions, targets, 2), torch.tensor(expected))
    # per image prefixes: S = 1 scores patches 1..3, S = 3 only patch 3; the mean is over the 4 scored patches
    per_image = autoregressive_loss(predictions.repeat(2, 1, 1), targets.repeat(2, 1, 1), torch.tensor([1, 3]))
    expected = (patch_error(1) + patch_error(2) + 2 * patch_error(3)) / 4
    torch.testing.assert_close(per_image, torch.tensor(expected))
